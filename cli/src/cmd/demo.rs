//! placeholder
use super::Result;
use crate::args::DemoArgs;
use crate::output::Output;
pub async fn run(_args: DemoArgs, _out: Output) -> Result<()> { Ok(()) }
