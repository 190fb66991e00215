//! The process' own figures at scrape time: resident memory and open file
//! descriptors, read from `/proc/self` on Linux (`None` elsewhere, and the
//! metrics are then left out rather than reported as zero).
//!
//! Read only when `/metrics`, `/stats` or the dashboard feed asks (about one
//! small file read and one directory listing), never on a session's path.

/// Resident memory in bytes (`VmRSS` of `/proc/self/status`, which is in
/// kB and so needs no page size).
pub(crate) fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    vm_rss_bytes(&status)
}

/// Open file descriptors (entries of `/proc/self/fd`; the listing's own
/// descriptor is one of them and is not counted).
pub(crate) fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?;
    let count = entries.filter(|entry| entry.is_ok()).count() as u64;
    Some(count.saturating_sub(1))
}

/// `VmRSS:   1234 kB` → 1234 × 1024.
fn vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let kilobytes: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(kilobytes * 1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kilobytes() {
        let status = "Name:\tsigway\nVmPeak:\t  9000 kB\nVmRSS:\t    2048 kB\nThreads: 4\n";
        assert_eq!(vm_rss_bytes(status), Some(2048 * 1024));
        assert_eq!(vm_rss_bytes("Name: x\n"), None);
        assert_eq!(vm_rss_bytes("VmRSS: lots\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_memory_and_descriptors() {
        assert!(resident_memory_bytes().is_some_and(|rss| rss > 1024 * 1024));
        let file = std::fs::File::open("/proc/self/status").expect("open");
        let with_file = open_fds().expect("fds");
        drop(file);
        assert!(with_file >= 1);
    }
}
