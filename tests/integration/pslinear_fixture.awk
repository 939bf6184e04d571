# pslinear_fixture.awk -- the tiny deterministic libsvm fixture of the
# pslinear reference and checkpoint tests (test_pslinear_ref.sh,
# test_pslinear_ckpt.sh): n = 400 examples over D = 300 features with real
# values, labelled by a sparse weight vector plus noise.  The same seed gives
# the same bytes with every awk: the generator is its own (Park and Miller's
# minimal standard, exact in doubles), not awk's rand(), which differs
# between mawk, gawk and busybox.
# Usage: awk -v seed=11 -f pslinear_fixture.awk </dev/null >train.svm
function rnd() { x = (x * 16807) % 2147483647; return x / 2147483647 }
BEGIN {
    x = seed % 2147483646 + 1; D = 300; n = 400
    for (j = 1; j <= D; j++) w[j] = (rnd() < 0.2) ? (rnd() * 4 - 2) : 0
    for (i = 0; i < n; i++) {
        delete seen; line = ""; z = 0; k = 0; nf = 5 + int(rnd() * 10)
        while (k < nf) { j = 1 + int(rnd() * D); if (!(j in seen)) { seen[j] = 1; k++ } }
        for (j = 1; j <= D; j++) if (j in seen) {
            v = (j % 3 == 0) ? int(rnd() * 8 + 1) / 4 : 1
            z += w[j] * v; line = line " " j ":" v
        }
        z += (rnd() - 0.5) * 2
        print ((z > 0) ? "+1" : "-1") line
    }
}
