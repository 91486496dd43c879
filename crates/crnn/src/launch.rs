//! [`Launch`]: which rank this process is, read from the launcher's environment the way
//! `torch.distributed` and Lightning read it (torchrun, or Slurm's `srun`).

use crate::{Error, Result};

/// Who started the processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// torchrun (`torch.distributed.run`): `RANK`, `WORLD_SIZE`, ... plus `TORCHELASTIC_*`.
    Torchrun,
    /// `RANK` and `WORLD_SIZE` set by hand or by another launcher (env:// rendezvous).
    Env,
    /// Slurm's `srun`: `SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`, the node list.
    Slurm,
}

impl std::fmt::Display for Launcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Torchrun => "torchrun",
            Self::Env => "RANK/WORLD_SIZE",
            Self::Slurm => "Slurm srun",
        })
    }
}

/// This process's place in a launched group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Where the values came from.
    pub launcher: Launcher,
    /// Global rank (`RANK`, `SLURM_PROCID`).
    pub rank: usize,
    /// Number of processes (`WORLD_SIZE`, `SLURM_NTASKS`).
    pub world_size: usize,
    /// Rank on this node (`LOCAL_RANK`, `SLURM_LOCALID`): the CUDA device index to use.
    pub local_rank: usize,
    /// Processes on this node (`LOCAL_WORLD_SIZE`, `SLURM_NTASKS_PER_NODE`).
    pub local_world_size: usize,
    /// The store's host (`MASTER_ADDR`; under Slurm, else the first host of
    /// `SLURM_JOB_NODELIST`).
    pub master_addr: String,
    /// The store's port (`MASTER_PORT`; under Slurm, else 15000 + the last four digits of
    /// `SLURM_JOB_ID`, as Lightning does).
    pub master_port: u16,
    /// The launcher's agent hosts the store (`TORCHELASTIC_USE_AGENT_STORE=True`).
    pub agent_store: bool,
    /// How often torchrun restarted the group (`TORCHELASTIC_RESTART_COUNT`, else 0).
    pub restart_count: usize,
    /// First name in `GLOO_SOCKET_IFNAME`, if set.
    pub gloo_socket_ifname: Option<String>,
}

fn bad(var: &str, rule: String) -> Error {
    Error::Launch {
        var: var.to_owned(),
        rule,
    }
}

fn number(get: &dyn Fn(&str) -> Option<String>, var: &str) -> Result<Option<usize>> {
    match get(var) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map(Some)
            .map_err(|_| bad(var, format!("{v:?} is not a whole number"))),
    }
}

fn required(get: &dyn Fn(&str) -> Option<String>, var: &str, why: &str) -> Result<String> {
    match get(var) {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(bad(var, format!("is not set, but {why}"))),
    }
}

fn port(var: &str, value: &str) -> Result<u16> {
    value
        .parse::<u16>()
        .map_err(|_| bad(var, format!("{value:?} is not a port number (0-65535)")))
}

/// The first host of a Slurm node list: `node[07-09,12],gpu3` gives `node07`, `n[1-2]-ib`
/// gives `n1-ib`, `a1,b2` gives `a1`.
pub fn first_slurm_host(list: &str) -> Option<String> {
    let list = list.trim();
    let (mut depth, mut end) = (0usize, list.len());
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let first = &list[..end];
    let host = match (first.find('['), first.find(']')) {
        (Some(open), Some(close)) if open < close => {
            let inner = &first[open + 1..close];
            let item = inner.split(',').next().unwrap_or("");
            let start = item.split('-').next().unwrap_or("");
            format!("{}{}{}", &first[..open], start, &first[close + 1..])
        }
        (None, None) => first.to_owned(),
        _ => return None,
    };
    (!host.is_empty()).then_some(host)
}

impl Launch {
    /// Reads the process environment; see [`from_vars`](Self::from_vars).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_vars(&|var| std::env::var(var).ok())
    }

    /// Reads the launch contract from `get` (a variable's value, or `None` when unset):
    ///
    /// - `RANK` and `WORLD_SIZE` (torchrun, or env:// by hand): with `MASTER_ADDR`,
    ///   `MASTER_PORT` required, `LOCAL_RANK` / `LOCAL_WORLD_SIZE` (defaults: `RANK` and
    ///   `WORLD_SIZE`, one node), `TORCHELASTIC_USE_AGENT_STORE`, `TORCHELASTIC_RESTART_COUNT`.
    ///   torchrun when a `TORCHELASTIC_RUN_ID` is set.
    /// - otherwise `SLURM_PROCID` and `SLURM_NTASKS` (a step started by `srun`), with
    ///   `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE`, and `MASTER_ADDR` / `MASTER_PORT` when set,
    ///   else the first host of `SLURM_JOB_NODELIST` (or `SLURM_NODELIST`) and
    ///   15000 + the last four digits of `SLURM_JOB_ID`.
    /// - otherwise `None`: not launched as a group (single-process training).
    ///
    /// A value that is there but wrong (not a number, a rank outside the world) is an
    /// [`Error::Launch`] naming the variable.
    pub fn from_vars(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let gloo_socket_ifname = get("GLOO_SOCKET_IFNAME")
            .and_then(|v| v.split(',').next().map(|s| s.trim().to_owned()))
            .filter(|s| !s.is_empty());
        let (rank, world) = (number(get, "RANK")?, number(get, "WORLD_SIZE")?);
        let launch = if rank.is_some() || world.is_some() {
            let why = "torchrun's contract sets RANK and WORLD_SIZE together";
            let (rank, world_size) = match (rank, world) {
                (Some(r), Some(w)) => (r, w),
                (None, _) => {
                    return Err(bad(
                        "RANK",
                        format!("is not set, but WORLD_SIZE is ({why})"),
                    ));
                }
                (_, None) => {
                    return Err(bad(
                        "WORLD_SIZE",
                        format!("is not set, but RANK is ({why})"),
                    ));
                }
            };
            let why = "RANK and WORLD_SIZE are (env:// rendezvous needs the store's address)";
            let master_addr = required(get, "MASTER_ADDR", why)?;
            let master_port = port("MASTER_PORT", &required(get, "MASTER_PORT", why)?)?;
            Launch {
                launcher: if get("TORCHELASTIC_RUN_ID").is_some() {
                    Launcher::Torchrun
                } else {
                    Launcher::Env
                },
                rank,
                world_size,
                local_rank: number(get, "LOCAL_RANK")?.unwrap_or(rank),
                local_world_size: number(get, "LOCAL_WORLD_SIZE")?.unwrap_or(world_size),
                master_addr,
                master_port,
                agent_store: get("TORCHELASTIC_USE_AGENT_STORE").as_deref() == Some("True"),
                restart_count: number(get, "TORCHELASTIC_RESTART_COUNT")?.unwrap_or(0),
                gloo_socket_ifname,
            }
        } else if let (Some(rank), Some(world_size)) =
            (number(get, "SLURM_PROCID")?, number(get, "SLURM_NTASKS")?)
        {
            let master_addr = match get("MASTER_ADDR").filter(|v| !v.trim().is_empty()) {
                Some(a) => a.trim().to_owned(),
                None => {
                    let (var, list) = match get("SLURM_JOB_NODELIST") {
                        Some(l) => ("SLURM_JOB_NODELIST", l),
                        None => (
                            "SLURM_NODELIST",
                            required(get, "SLURM_NODELIST", "MASTER_ADDR is not set either")?,
                        ),
                    };
                    first_slurm_host(&list)
                        .ok_or_else(|| bad(var, format!("{list:?} is not a Slurm node list")))?
                }
            };
            let master_port = match get("MASTER_PORT").filter(|v| !v.trim().is_empty()) {
                Some(p) => port("MASTER_PORT", p.trim())?,
                None => {
                    let job = required(get, "SLURM_JOB_ID", "MASTER_PORT is not set either")?;
                    let digits: String = job.chars().filter(char::is_ascii_digit).collect();
                    let tail = &digits[digits.len().saturating_sub(4)..];
                    15000 + tail.parse::<u16>().unwrap_or(0)
                }
            };
            // SLURM_NTASKS_PER_NODE looks like "2" or "2(x3)".
            let per_node = get("SLURM_NTASKS_PER_NODE").and_then(|v| {
                let digits: String = v.chars().take_while(char::is_ascii_digit).collect();
                digits.parse::<usize>().ok()
            });
            Launch {
                launcher: Launcher::Slurm,
                rank,
                world_size,
                local_rank: number(get, "SLURM_LOCALID")?.unwrap_or(0),
                local_world_size: per_node.unwrap_or(world_size),
                master_addr,
                master_port,
                agent_store: false,
                restart_count: number(get, "SLURM_RESTART_COUNT")?.unwrap_or(0),
                gloo_socket_ifname,
            }
        } else {
            return Ok(None);
        };
        let (rank_var, world_var, local_var) = match launch.launcher {
            Launcher::Slurm => ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
            _ => ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
        };
        if launch.world_size == 0 {
            return Err(bad(world_var, "is 0".into()));
        }
        if launch.rank >= launch.world_size {
            return Err(bad(
                rank_var,
                format!(
                    "{} is not below the world size {}",
                    launch.rank, launch.world_size
                ),
            ));
        }
        if launch.local_rank >= launch.local_world_size.max(1) {
            return Err(bad(
                local_var,
                format!(
                    "{} is not below the local world size {}",
                    launch.local_rank, launch.local_world_size
                ),
            ));
        }
        Ok(Some(launch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> Result<Option<Launch>> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Launch::from_vars(&|k| map.get(k).cloned())
    }

    #[test]
    fn nothing_set_is_single_process() {
        assert_eq!(read(&[]).unwrap(), None);
    }

    #[test]
    fn torchrun_contract() {
        let l = read(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "4"),
            ("LOCAL_RANK", "1"),
            ("LOCAL_WORLD_SIZE", "2"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
            ("TORCHELASTIC_RUN_ID", "abc"),
            ("TORCHELASTIC_USE_AGENT_STORE", "True"),
            ("TORCHELASTIC_RESTART_COUNT", "2"),
            ("GLOO_SOCKET_IFNAME", "eth1,eth2"),
            // Slurm variables of an outer allocation do not override torchrun's.
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "1"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.launcher, Launcher::Torchrun);
        assert_eq!(
            (l.rank, l.world_size, l.local_rank, l.local_world_size),
            (3, 4, 1, 2)
        );
        assert_eq!((l.master_addr.as_str(), l.master_port), ("node0", 29500));
        assert!(l.agent_store);
        assert_eq!(l.restart_count, 2);
        assert_eq!(l.gloo_socket_ifname.as_deref(), Some("eth1"));
    }

    #[test]
    fn env_by_hand_defaults_to_one_node() {
        let l = read(&[
            ("RANK", "1"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "127.0.0.1"),
            ("MASTER_PORT", "1234"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.launcher, Launcher::Env);
        assert_eq!((l.local_rank, l.local_world_size), (1, 2));
        assert!(!l.agent_store);
    }

    #[test]
    fn slurm_contract() {
        let l = read(&[
            ("SLURM_PROCID", "5"),
            ("SLURM_NTASKS", "8"),
            ("SLURM_LOCALID", "1"),
            ("SLURM_NTASKS_PER_NODE", "4(x2)"),
            ("SLURM_JOB_NODELIST", "gpu[07-08]"),
            ("SLURM_JOB_ID", "1234567"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(l.launcher, Launcher::Slurm);
        assert_eq!(
            (l.rank, l.world_size, l.local_rank, l.local_world_size),
            (5, 8, 1, 4)
        );
        assert_eq!(
            (l.master_addr.as_str(), l.master_port),
            ("gpu07", 15000 + 4567)
        );
        let l = read(&[
            ("SLURM_PROCID", "0"),
            ("SLURM_NTASKS", "2"),
            ("SLURM_NODELIST", "a1,b2"),
            ("MASTER_PORT", "29400"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!((l.master_addr.as_str(), l.master_port), ("a1", 29400));
    }

    #[test]
    fn node_lists() {
        assert_eq!(
            first_slurm_host("node[07-09,12],gpu3").as_deref(),
            Some("node07")
        );
        assert_eq!(first_slurm_host("n[1-2]-ib").as_deref(), Some("n1-ib"));
        assert_eq!(first_slurm_host("a1,b2").as_deref(), Some("a1"));
        assert_eq!(first_slurm_host("single").as_deref(), Some("single"));
        assert_eq!(first_slurm_host("bad[1-2"), None);
        assert_eq!(first_slurm_host(""), None);
    }

    #[test]
    fn wrong_values_name_the_variable() {
        let e = read(&[("RANK", "0"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(e.to_string().contains("MASTER_ADDR"), "{e}");
        let e = read(&[("RANK", "x"), ("WORLD_SIZE", "2")]).unwrap_err();
        assert!(
            e.to_string().contains("RANK") && e.to_string().contains("\"x\""),
            "{e}"
        );
        let e = read(&[("WORLD_SIZE", "2")]).unwrap_err();
        assert!(e.to_string().starts_with("RANK"), "{e}");
        let e = read(&[
            ("RANK", "2"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "1"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("not below the world size 2"), "{e}");
        let e = read(&[
            ("RANK", "0"),
            ("WORLD_SIZE", "2"),
            ("MASTER_ADDR", "h"),
            ("MASTER_PORT", "70000"),
        ])
        .unwrap_err();
        assert!(e.to_string().contains("MASTER_PORT"), "{e}");
    }
}
