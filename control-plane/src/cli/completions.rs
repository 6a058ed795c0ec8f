//! `control-plane completions bash|zsh|fish|...`: the shell's completion script, on
//! stdout (e.g. `control-plane completions bash > /etc/bash_completion.d/control-plane`).

use clap::CommandFactory;
use clap_complete::Shell;

use super::Cli;

pub fn run(shell: Shell) {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "control-plane",
        &mut std::io::stdout(),
    );
}
