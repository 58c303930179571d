# Sourced by the launch scripts: print each command (shell-quoted, after "+"), run it unless --dry-run.

DRY_RUN=0

# One word as a shell reads it back: bare when safe, else in single quotes (or %q if it has one).
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
    printf '%s' "$1"
  elif [[ "$1" != *"'"* ]]; then
    printf "'%s'" "$1"
  else
    printf '%q' "$1"
  fi
}

run() {
  local word line="+"
  for word in "$@"; do
    line+=" $(quote "$word")"
  done
  echo "$line"
  if [[ "$DRY_RUN" == 0 ]]; then
    "$@"
  fi
}

die() {
  echo "$(basename "$0"): $*" >&2
  exit 2
}

# The value of an option that takes one: die naming the option when it is missing.
need_value() {
  [[ $# -ge 2 && -n "$2" && "$2" != --* ]] || die "$1 needs a value"
}

# Die unless every named command is on PATH (skipped with --dry-run, which runs nothing).
require_commands() {
  [[ "$DRY_RUN" == 1 ]] && return 0
  local name
  for name in "$@"; do
    command -v "$name" >/dev/null || die "'$name' is not on PATH (install it, or look at the commands with --dry-run)"
  done
}
