# Helpers shared by scripts/demo.sh and scripts/test.sh (sourced; needs $ROOT,
# the repository).

# The oldest Rust that builds the workspace: rust-version in the root Cargo.toml.
rust_version() {
  sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$ROOT/Cargo.toml" | head -n 1
}

# version_ge A B: A >= B, as dotted versions
version_ge() {
  [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]
}

# find_cargo: finds a cargo of at least rust-version. `sudo` resets PATH (and
# HOME), so root may have no cargo although the user who ran sudo has one:
# tries the cargo on PATH, then $SUDO_USER's ~/.cargo/bin/cargo, then
# /root/.cargo/bin/cargo. The build then runs as root with that toolchain
# (for a rustup one under another home, RUSTUP_HOME points at it; crates
# download to root's own ~/.cargo). Sets CARGO and puts its directory first on
# PATH, so that `cargo fmt` and `cargo clippy` come from the same toolchain.
find_cargo() {
  local want c v base home found="" cands=()
  want=$(rust_version)
  c=$(command -v cargo 2>/dev/null) && cands+=("$c")
  if [ -n "${SUDO_USER:-}" ] && home=$(getent passwd "$SUDO_USER" | cut -d: -f6) && [ -n "$home" ]; then
    cands+=("$home/.cargo/bin/cargo")
  fi
  cands+=(/root/.cargo/bin/cargo)
  for c in "${cands[@]}"; do
    [ -x "$c" ] || continue
    # a rustup proxy finds its toolchains in RUSTUP_HOME (default ~/.rustup,
    # and ~ is root's under sudo)
    base=${c%/.cargo/bin/cargo}
    if [ -z "${RUSTUP_HOME:-}" ] && [ "$base" != "$c" ] && [ -d "$base/.rustup" ]; then
      v=$(RUSTUP_HOME=$base/.rustup "$c" --version 2>/dev/null)
    else
      v=$("$c" --version 2>/dev/null)
      base=""
    fi
    v=$(echo "$v" | awk '{ sub(/-.*/, "", $2); print $2 }')
    if [ -n "$v" ] && version_ge "$v" "${want:-0}"; then
      if [ -n "$base" ]; then
        export RUSTUP_HOME=$base/.rustup
      fi
      CARGO=$c
      export PATH="${c%/cargo}:$PATH"
      return 0
    fi
    found="$found${found:+,} $c (${v:-no toolchain})"
  done
  echo "no cargo for Rust ${want:-?} or newer (looked on PATH${SUDO_USER:+, in ~$SUDO_USER/.cargo/bin}, in /root/.cargo/bin${found:+; found:$found})." >&2
  echo "Install Rust with rustup (https://rustup.rs), as yourself or as root:" >&2
  echo "  curl --proto '=https' -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain stable" >&2
  echo "then run this again with sudo. (Debian's own cargo package is too old: the workspace needs rust-version ${want:-?}.)" >&2
  return 1
}
