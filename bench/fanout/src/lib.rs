//! What the benchmark clients share: reading a server process's costs
//! from `/proc`.

pub mod process;
