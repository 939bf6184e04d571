#!/usr/bin/env python3
"""quality.py -- the quality of a topic model, from its topic-word matrix alone.

Any model (pslda, gensim, scikit-learn) is scored the same way from a TSV
file: a header line "word<TAB>t0<TAB>t1...", then one line per word of the
vocabulary with its weight in every topic (probabilities or pseudo-counts:
each topic's column is normalized here, after adding 1e-12 so that no word
has probability 0).  Two measures:

  perplexity  held-out, by document completion (Wallach et al. 2009): in each
              test document, the known words at even positions estimate its
              topic mix theta with the matrix fixed (--fold-iters rounds of
              theta_k = (alpha + sum_i p(k | w_i)) / (K alpha + n_even)), and
              the words at odd positions are scored: exp(-mean log
              sum_k theta_k phi_kw).  pslda prints the same estimate
              (apps/lda/eval.c).  Documents with fewer than 2 known words are
              skipped and counted.
  npmi        coherence of each topic's --top most probable words over the
              reference corpus (--corpus, by default the training file):
              normalized PMI of document co-occurrence, averaged over the
              pairs of a topic and then over topics; a pair that never
              co-occurs counts -1.  UMass coherence (Mimno et al. 2011) is
              printed beside it.

Tokenizing is pslda's: runs of ASCII letters, lower-cased, --min-len to 40
letters, minus --stopwords; words outside the matrix's vocabulary are dropped.

--selfcheck scores the model against two that know nothing: a random matrix
(every topic drawn from a flat Dirichlet over the vocabulary) and a
word-frequency one (every topic is the unigram distribution of the reference
corpus); it exits 1 unless the model beats both clearly (perplexity below
0.97 of the better baseline's, NPMI above it by at least 0.02).  The bench
(bench/lda-vs-gensim.sh) runs it on every model it reports.

Needs python3-numpy.  Exit status: 0, 1 (selfcheck failed), 2 (bad input).
"""
import argparse
import json
import math
import re
import sys

try:
    import numpy as np
except ImportError:
    sys.exit("quality.py: needs numpy (Debian: apt-get install python3-numpy)")

WORD = re.compile(r"[A-Za-z]+")


def die(msg):
    print("quality.py: " + msg, file=sys.stderr)
    sys.exit(2)


def load_matrix(path):
    """(words, phi[K, V]) with each topic normalized; dies on a bad file."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            head = f.readline().rstrip("\n").split("\t")
            words, rows = [], []
            for n, line in enumerate(f, 2):
                parts = line.rstrip("\n").split("\t")
                if len(parts) != len(head):
                    die("%s:%d: %d fields, the header has %d" % (path, n, len(parts), len(head)))
                words.append(parts[0])
                rows.append([float(x) for x in parts[1:]])
    except (OSError, ValueError) as e:
        die("%s: %s" % (path, e))
    if len(head) < 3 or not words:
        die("%s: want a header word<TAB>t0<TAB>t1... and one line per word" % path)
    phi = np.asarray(rows, dtype=np.float64).T
    if not np.all(np.isfinite(phi)) or np.any(phi < 0):
        die("%s: weights must be finite and >= 0" % path)
    return words, normalize(phi)


def normalize(phi):
    phi = phi + 1e-12
    return phi / phi.sum(axis=1, keepdims=True)


def read_docs(path, index, min_len, stop):
    """Documents of path as arrays of word indices (words outside index dropped)."""
    docs = []
    try:
        with open(path, "rb") as f:
            for n, raw in enumerate(f, 1):
                if b"\0" in raw:
                    die("%s:%d: a NUL byte: not a text file" % (path, n))
                toks = (w.lower() for w in WORD.findall(raw.decode("latin1")))
                ids = [index[w] for w in toks if min_len <= len(w) <= 40 and w not in stop
                       and w in index]
                docs.append(np.asarray(ids, dtype=np.int64))
    except OSError as e:
        die("%s: %s" % (path, e))
    return docs


def perplexity(phi, docs, alpha, iters):
    """(perplexity, documents scored, tokens scored, documents skipped)."""
    K = phi.shape[0]
    ll, ntok, ndoc, skipped = 0.0, 0, 0, 0
    for d in docs:
        if len(d) < 2:
            skipped += 1
            continue
        even, odd = phi[:, d[0::2]], phi[:, d[1::2]]
        theta = np.full(K, 1.0 / K)
        for _ in range(iters):
            p = theta[:, None] * even
            p /= p.sum(axis=0, keepdims=True)
            theta = (alpha + p.sum(axis=1)) / (K * alpha + even.shape[1])
        ll += float(np.log(theta @ odd).sum())
        ntok += odd.shape[1]
        ndoc += 1
    return (math.exp(-ll / ntok) if ntok else float("nan")), ndoc, ntok, skipped


def coherence(phi, docs, top):
    """(mean NPMI, mean UMass) of the topics' top words over docs."""
    tops = [list(np.argsort(-row)[:top]) for row in phi]
    want = {w for t in tops for w in t}
    occ = {w: set() for w in want}
    for i, d in enumerate(docs):
        for w in set(d.tolist()) & want:
            occ[w].add(i)
    D = max(len(docs), 1)
    npmis, umass = [], []
    for t in tops:
        s_n, s_u, pairs = 0.0, 0.0, 0
        for i in range(1, len(t)):
            for j in range(i):
                a, b = occ[t[i]], occ[t[j]]
                both = len(a & b)
                if both == 0:
                    s_n += -1.0
                else:
                    pab = both / D
                    pmi = math.log(pab / ((len(a) / D) * (len(b) / D)))
                    s_n += pmi / -math.log(pab) if pab < 1 else 1.0
                s_u += math.log((both + 1) / max(len(b), 1))
                pairs += 1
        npmis.append(s_n / max(pairs, 1))
        umass.append(s_u / max(pairs, 1))
    return float(np.mean(npmis)), float(np.mean(umass))


def score(name, phi, test, ref, a):
    ppl, ndoc, ntok, skipped = perplexity(phi, test, a.alpha, a.fold_iters) if test else (
        float("nan"), 0, 0, 0)
    npmi, umass = coherence(phi, ref, a.top)
    return {"model": name, "perplexity": ppl, "npmi": npmi, "umass": umass,
            "topics": phi.shape[0], "vocab": phi.shape[1], "test_docs": ndoc,
            "test_tokens": ntok, "test_skipped": skipped}


def baselines(phi, ref, seed):
    K, V = phi.shape
    rng = np.random.default_rng(seed)
    random = rng.dirichlet(np.ones(V), size=K)
    freq = np.bincount(np.concatenate(ref) if ref else np.zeros(0, np.int64), minlength=V)
    unigram = np.tile(freq.astype(np.float64) + 0.01, (K, 1))
    return normalize(random), normalize(unigram)


def jsonable(d):
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def show(r, as_json):
    if as_json:
        print(json.dumps(jsonable(r)))
    else:
        print("%-10s perplexity %9.1f  npmi %+.4f  umass %+.3f  (%d topics, %d words, %d test "
              "docs, %d skipped)" % (r["model"], r["perplexity"], r["npmi"], r["umass"],
                                     r["topics"], r["vocab"], r["test_docs"], r["test_skipped"]))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("phi", help="topic-word TSV: word<TAB>weight per topic")
    p.add_argument("--test", help="held-out documents, one per line (perplexity)")
    p.add_argument("--corpus", help="reference documents for coherence (required)",
                   required=True)
    p.add_argument("--stopwords", help="stop words, one per line")
    p.add_argument("--min-len", type=int, default=3)
    p.add_argument("--alpha", type=float, default=0.1, help="prior of document completion")
    p.add_argument("--fold-iters", type=int, default=30)
    p.add_argument("--top", type=int, default=10, help="top words per topic for coherence")
    p.add_argument("--name", default="model")
    p.add_argument("--seed", type=int, default=1, help="random baseline's seed")
    p.add_argument("--selfcheck", action="store_true",
                   help="also score a random and a word-frequency matrix; exit 1 unless the "
                        "model beats both clearly")
    p.add_argument("--json", action="store_true", help="one JSON line per model")
    a = p.parse_args()
    if a.alpha <= 0 or a.fold_iters < 1 or a.top < 2:
        die("--alpha > 0, --fold-iters >= 1 and --top >= 2, please")
    stop = set()
    if a.stopwords:
        try:
            stop = {w.lower() for l in open(a.stopwords) for w in WORD.findall(l)}
        except OSError as e:
            die("%s: %s" % (a.stopwords, e))
    words, phi = load_matrix(a.phi)
    index = {w: i for i, w in enumerate(words)}
    ref = [d for d in read_docs(a.corpus, index, a.min_len, stop) if len(d)]
    if not ref:
        die("%s: no document has a word of the vocabulary" % a.corpus)
    test = read_docs(a.test, index, a.min_len, stop) if a.test else None
    res = [score(a.name, phi, test, ref, a)]
    if a.selfcheck:
        rnd, uni = baselines(phi, ref, a.seed)
        res += [score("random", rnd, test, ref, a), score("unigram", uni, test, ref, a)]
    for r in res:
        show(r, a.json)
    if a.selfcheck:
        m, others = res[0], res[1:]
        ok_p = not test or m["perplexity"] < 0.97 * min(o["perplexity"] for o in others)
        ok_n = m["npmi"] > max(o["npmi"] for o in others) + 0.02
        verdict = {"selfcheck": "ok" if ok_p and ok_n else "failed",
                   "perplexity_beats_baselines": ok_p, "npmi_beats_baselines": ok_n}
        print(json.dumps(verdict) if a.json else "selfcheck: %s (perplexity %s, npmi %s)" % (
            verdict["selfcheck"], "ok" if ok_p else "NOT better", "ok" if ok_n else "NOT better"))
        return 0 if ok_p and ok_n else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
