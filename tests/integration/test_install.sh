#!/usr/bin/env bash
# `make install` gives a usable package: the README's first example program,
# extracted from README.md, compiles against the installed headers through
# pkg-config and through the CMake package, and runs on a psrun cluster.
. "$(dirname "$0")/lib.sh"

build=$(dirname "$PS_BIN"); src=$(cd "$(dirname "$0")/../.." && pwd)
cmake --install "$build" --prefix "$TMP/inst" >/dev/null || fail "cmake --install failed"
for f in include/ps/ps.h lib/libps.a lib/libps.so lib/pkgconfig/libps.pc lib/cmake/libps/libpsConfig.cmake; do
  [ -e "$TMP/inst/$f" ] || fail "install is missing $f"
done
awk '/^```c$/{n++; on = n == 1; next} /^```$/{on=0} on' "$src/README.md" > "$TMP/example.c"
[ -s "$TMP/example.c" ] || fail "no C example in README.md"
san=""; grep -q '^PS_SANITIZE:BOOL=ON' "$build/CMakeCache.txt" && san="-fsanitize=address,undefined"
grep -q '^PS_TSAN:BOOL=ON' "$build/CMakeCache.txt" && san="-fsanitize=thread"
export PKG_CONFIG_PATH=$TMP/inst/lib/pkgconfig
cc $san -Wall -Wextra -Werror -o "$TMP/example" "$TMP/example.c" $(pkg-config --cflags --libs libps) \
  || fail "README example does not compile against the installed package"
out=$(LD_LIBRARY_PATH=$TMP/inst/lib timeout 60 "$PS_BIN/psrun" -s 1 -w 2 --timeout 50 -- "$TMP/example" 2>&1) \
  || fail "README example failed under psrun: $out"
[ "$(echo "$out" | grep -c 'of 1 servers / 2 workers')" = 4 ] || fail "README example printed: $out"
pass "installed package: pkg-config build of the README example runs on 1+1+2 nodes"

mkdir -p "$TMP/cm" && cp "$TMP/example.c" "$TMP/cm/" && cat > "$TMP/cm/CMakeLists.txt" <<CM
cmake_minimum_required(VERSION 3.18)
project(example C)
find_package(libps REQUIRED)
add_executable(example example.c)
target_compile_options(example PRIVATE $san)
target_link_options(example PRIVATE $san)
target_link_libraries(example PRIVATE libps::ps_static)
CM
cmake -S "$TMP/cm" -B "$TMP/cm/b" -DCMAKE_PREFIX_PATH="$TMP/inst" >/dev/null 2>"$TMP/cmake.err" &&
  cmake --build "$TMP/cm/b" >/dev/null 2>>"$TMP/cmake.err" || fail "CMake package: $(cat "$TMP/cmake.err")"
[ -x "$TMP/cm/b/example" ] || fail "CMake package build produced no binary"
pass "installed CMake package: find_package(libps) + libps::ps_static links"

# The shared library's ABI is what include/ps/ declares, nothing more: every
# dynamic symbol it defines is a ps_ name, and every function the installed
# headers declare is one of them (the build hides every internal psi_ name).
nm -D --defined-only "$TMP/inst/lib/libps.so" | awk '{print $3}' | sort -u > "$TMP/abi.txt"
[ -s "$TMP/abi.txt" ] || fail "nm found no symbols in libps.so"
extra=$(grep -v '^ps_' "$TMP/abi.txt" | head -5)
[ -z "$extra" ] || fail "libps.so exports names outside the API: $extra"
for h in "$TMP"/inst/include/ps/*.h; do echo "#include <ps/$(basename "$h")>"; done |
  cc -E -P -I"$TMP/inst/include" - | grep -oE '\bps_[a-z0-9_]+[[:space:]]*\(' | tr -d ' (' |
  sort -u > "$TMP/declared.txt"
[ "$(wc -l < "$TMP/declared.txt")" -ge 20 ] || fail "found too few declarations: $(cat "$TMP/declared.txt")"
missing=$(comm -23 "$TMP/declared.txt" "$TMP/abi.txt" | head -5)
[ -z "$missing" ] || fail "declared in include/ps/ but not exported: $missing"
pass "libps.so exports exactly the $(wc -l < "$TMP/abi.txt") ps_ functions of include/ps/"
