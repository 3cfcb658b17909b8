//! Which CPUs the executors are pinned to: those in the process's affinity
//! mask (`taskset`, a container's cpuset) that are also online. glommio's
//! own CPU list only knows the online CPUs, which inside a container is the
//! whole machine.

use tracing::warn;

use crate::{sys, Error};

/// Parses a kernel CPU list such as `0-3,8,10-11`.
pub fn parse_cpu_list(s: &str) -> Option<Vec<usize>> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if b < a || b - a > 65_536 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.trim().parse().ok()?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Some(out)
}

/// CPUs the kernel reports online.
pub fn online() -> Option<Vec<usize>> {
    std::fs::read_to_string("/sys/devices/system/cpu/online")
        .ok()
        .and_then(|s| parse_cpu_list(&s))
}

/// CPUs this process may run on: the affinity mask, restricted to online CPUs.
pub fn usable() -> Result<Vec<usize>, Error> {
    let mask = sys::affinity_cpus()?;
    let cpus: Vec<usize> = match online() {
        Some(online) => mask
            .into_iter()
            .filter(|c| online.binary_search(c).is_ok())
            .collect(),
        None => mask,
    };
    if cpus.is_empty() {
        return Err(Error::Environment(
            "no online CPU in this process's affinity mask".into(),
        ));
    }
    Ok(cpus)
}

/// One CPU per executor: every usable CPU, or the first `cores` of them.
/// Asking for more executors than usable CPUs pins several to one CPU (with a warning).
pub fn select(cores: Option<usize>) -> Result<Vec<usize>, Error> {
    let usable = usable()?;
    Ok(assign(&usable, cores))
}

fn assign(usable: &[usize], cores: Option<usize>) -> Vec<usize> {
    let n = cores.unwrap_or(usable.len());
    if n > usable.len() {
        warn!(
            executors = n,
            cpus = usable.len(),
            "--cores asks for more executors than usable CPUs; some CPUs get several"
        );
    }
    (0..n).map(|i| usable[i % usable.len()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(
            parse_cpu_list("0-3,8,10-11\n"),
            Some(vec![0, 1, 2, 3, 8, 10, 11])
        );
        assert_eq!(parse_cpu_list("5"), Some(vec![5]));
        assert_eq!(parse_cpu_list("1,0,1"), Some(vec![0, 1]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn executors_take_usable_cpus_in_order() {
        assert_eq!(assign(&[2, 5, 7], None), vec![2, 5, 7]);
        assert_eq!(assign(&[2, 5, 7], Some(2)), vec![2, 5]);
        assert_eq!(assign(&[2, 5], Some(3)), vec![2, 5, 2]);
    }

    #[test]
    fn this_process_has_usable_cpus() {
        let cpus = usable().unwrap();
        assert!(!cpus.is_empty());
    }
}
