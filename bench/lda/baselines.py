#!/usr/bin/env python3
"""baselines.py -- train gensim's LdaMulticore or scikit-learn's
LatentDirichletAllocation on the same documents, vocabulary, K and priors as
a pslda run, and write the topic-word matrix in the TSV format of
bench/lda/quality.py.

The vocabulary is the word column of a pslda --save PREFIX.phi.tsv, in its
order; documents are tokenized as pslda does (runs of ASCII letters,
lower-cased, --min-len to 40 letters, minus --stopwords) and keep only the
words of that vocabulary, so every model sees the same bag of words.  gensim
(online variational Bayes, Hoffman et al. 2010) runs --passes over the
corpus with --workers processes; scikit-learn (batch variational Bayes) runs
--iters iterations with --workers jobs.  Priors: alpha for document-topic,
beta (gensim's eta, scikit-learn's topic_word_prior) for topic-word.

The last stdout line is JSON: {"model", "seed", "wall_seconds"} (training
only, not reading).  Needs python3-gensim or python3-sklearn (Debian).
"""
import argparse
import collections
import json
import re
import sys
import time

WORD = re.compile(r"[A-Za-z]+")


def die(msg):
    print("baselines.py: " + msg, file=sys.stderr)
    sys.exit(2)


def vocabulary(path):
    with open(path, encoding="utf-8") as f:
        f.readline()
        return [line.split("\t", 1)[0] for line in f]


def bags(path, index, min_len, stop):
    """Documents as lists of (word id, count); documents with no word dropped."""
    out = []
    with open(path, "rb") as f:
        for raw in f:
            toks = (w.lower() for w in WORD.findall(raw.decode("latin1")))
            c = collections.Counter(index[w] for w in toks
                                    if min_len <= len(w) <= 40 and w not in stop and w in index)
            if c:
                out.append(sorted(c.items()))
    return out


def train_gensim(docs, words, a):
    from gensim.models import LdaMulticore
    id2word = dict(enumerate(words))
    t0 = time.time()
    m = LdaMulticore(corpus=docs, num_topics=a.k, id2word=id2word, workers=a.workers,
                     passes=a.passes, alpha=[a.alpha] * a.k, eta=a.beta,
                     random_state=a.seed, chunksize=2000, iterations=100)
    return m.get_topics(), time.time() - t0


def train_sklearn(docs, words, a):
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import LatentDirichletAllocation
    rows = [i for i, d in enumerate(docs) for _ in d]
    cols = [w for d in docs for w, _ in d]
    vals = [c for d in docs for _, c in d]
    X = csr_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)),
                   shape=(len(docs), len(words)))
    t0 = time.time()
    m = LatentDirichletAllocation(n_components=a.k, doc_topic_prior=a.alpha,
                                  topic_word_prior=a.beta, learning_method="batch",
                                  max_iter=a.iters, random_state=a.seed, n_jobs=a.workers)
    m.fit(X)
    return m.components_, time.time() - t0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model", choices=["gensim", "sklearn"])
    p.add_argument("--train", required=True)
    p.add_argument("--vocab", required=True, help="a pslda PREFIX.phi.tsv (its words)")
    p.add_argument("--out", required=True, help="topic-word TSV to write")
    p.add_argument("--stopwords")
    p.add_argument("--min-len", type=int, default=3)
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--alpha", type=float, default=0.1)
    p.add_argument("--beta", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--passes", type=int, default=10, help="gensim passes")
    p.add_argument("--iters", type=int, default=20, help="scikit-learn iterations")
    p.add_argument("--workers", type=int, default=2)
    a = p.parse_args()
    try:
        words = vocabulary(a.vocab)
        stop = {w.lower() for l in open(a.stopwords) for w in WORD.findall(l)} if a.stopwords \
            else set()
        docs = bags(a.train, {w: i for i, w in enumerate(words)}, a.min_len, stop)
    except OSError as e:
        die(str(e))
    if not docs:
        die("%s: no document has a word of the vocabulary" % a.train)
    phi, secs = (train_gensim if a.model == "gensim" else train_sklearn)(docs, words, a)
    with open(a.out, "w") as f:
        f.write("word\t" + "\t".join("t%d" % k for k in range(a.k)) + "\n")
        for i, w in enumerate(words):
            f.write(w + "\t" + "\t".join("%.6g" % phi[k][i] for k in range(a.k)) + "\n")
    print(json.dumps({"model": a.model, "seed": a.seed, "wall_seconds": round(secs, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
