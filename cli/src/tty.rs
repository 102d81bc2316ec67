//! Whether reading stdin would stop us. A background job of an interactive shell that reads
//! its terminal gets SIGTTIN and is stopped ("Stopped (tty input)"), so `hdht listen > file &`
//! would never get to its connection.

/// True when stdin is our controlling terminal and our process group is not its foreground
/// group: then a read would stop the whole process.
pub fn stdin_is_background_terminal() -> bool {
    #[cfg(unix)]
    {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            return false;
        }
        // SAFETY: two queries without arguments in memory (fd 0, the calling process).
        let (foreground, ours) = unsafe { (libc::tcgetpgrp(0), libc::getpgrp()) };
        // -1: not our controlling terminal, reading it cannot stop us.
        foreground > 0 && foreground != ours
    }
    #[cfg(not(unix))]
    {
        false
    }
}
