//! The open-file limit, raised by the server at start (called from
//! `server::accept::listen`). Every connection holds a descriptor (two while
//! the registry keeps its clone), and the soft limit is often 1,024 while
//! the hard one allows far more: 10,000 clients need the hard limit. The
//! libc calls live here, the one module where `unsafe` is allowed.

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the soft
/// limit in force afterwards (`None` if it cannot be read).
pub(crate) fn raise_open_files_limit() -> Option<libc::rlim_t> {
    #[cfg(unix)]
    {
        raise_to_hard()
    }
    #[cfg(not(unix))]
    {
        None
    }
}

#[cfg(unix)]
fn raise_to_hard() -> Option<libc::rlim_t> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit that setrlimit only reads.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Some(limit.rlim_cur)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn current() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: a valid, writable rlimit for getrlimit to fill.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) },
            0
        );
        limit
    }

    #[test]
    fn a_lowered_soft_limit_is_raised_to_the_hard_one() {
        let hard = current().rlim_max;
        // One below the hard limit: enough to see it raised, too little to
        // starve the tests running beside this one.
        let lowered = libc::rlimit {
            rlim_cur: hard - 1,
            rlim_max: hard,
        };
        // SAFETY: a valid rlimit that setrlimit only reads.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
        assert_eq!(current().rlim_cur, hard - 1);
        assert_eq!(raise_open_files_limit(), Some(hard));
        assert_eq!(current().rlim_cur, hard);
    }
}
