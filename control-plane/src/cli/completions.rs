//! `control-plane completions bash|zsh|fish|...`: the shell's completion script, on
//! stdout (e.g. `control-plane completions bash > /etc/bash_completion.d/control-plane`).

use clap_complete::Shell;

/// Writes the completion script of `command` (the whole CLI) for `shell`.
pub fn run(shell: Shell, mut command: clap::Command) {
    clap_complete::generate(shell, &mut command, "control-plane", &mut std::io::stdout());
}
