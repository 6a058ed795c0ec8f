//! Tests of the `control-plane` executable itself, run as a separate process the way an
//! operator runs it: the configuration loader (environment and TOML file), the
//! installation identity check across working directories, and signals and pipes.

mod completions;
mod config_table;
mod identity;
mod logging;
mod process;
mod support;
mod version;
