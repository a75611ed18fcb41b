# Sourced by the .ci scripts: one cargo target directory outside the clone, so a rerun on the
# same machine (or a second clone) is warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/auspex/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_INCREMENTAL=0
export PATH="$HOME/.cargo/bin:$PATH"
