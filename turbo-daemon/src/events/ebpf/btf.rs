//! Kernel struct field offsets the programs need, read from the kernel's BTF
//! (`/sys/kernel/btf/vmlinux`) at load time and patched into the object's read-only globals.

use std::fmt;

use turbo_common as abi;

use super::{EbpfError, VMLINUX_BTF, error_chain};

/// A kernel struct field (or size) the programs use, its load-time global, and its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    /// The struct.
    pub(crate) ty: &'static str,
    /// The field (`"sizeof"` for the struct's size).
    pub(crate) field: &'static str,
    /// The global in the object.
    pub(crate) global: &'static str,
    /// Byte offset (or size); `None` when missing from BTF.
    pub(crate) value: Option<u64>,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field == "sizeof" {
            write!(f, "sizeof(struct {})", self.ty)
        } else {
            write!(f, "{}.{}", self.ty, self.field)
        }
    }
}

/// Kernel struct field offsets (bytes) the programs need, read from kernel BTF.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Offsets {
    pub(crate) fields: Vec<Field>,
}

/// What each field is called, and which global carries it.
const FIELDS: &[(&str, &str, &str)] = &[
    ("task_struct", "exit_code", abi::GLOBAL_OFF_TASK_EXIT_CODE),
    ("task_struct", "pid", abi::GLOBAL_OFF_TASK_PID),
    ("task_struct", "tgid", abi::GLOBAL_OFF_TASK_TGID),
    ("task_struct", "signal", abi::GLOBAL_OFF_TASK_SIGNAL),
    ("task_struct", "mm", abi::GLOBAL_OFF_TASK_MM),
    ("task_struct", "comm", abi::GLOBAL_OFF_TASK_COMM),
    (
        "signal_struct",
        "group_exit_code",
        abi::GLOBAL_OFF_SIGNAL_GROUP_EXIT_CODE,
    ),
    ("mm_struct", "hiwater_rss", abi::GLOBAL_OFF_MM_HIWATER_RSS),
    (
        "signal_struct",
        "oom_score_adj",
        abi::GLOBAL_OFF_SIGNAL_OOM_SCORE_ADJ,
    ),
    ("mm_struct", "owner", abi::GLOBAL_OFF_MM_OWNER),
    ("mm_struct", "rss_stat", abi::GLOBAL_OFF_MM_RSS_STAT),
    ("mm_struct", "total_vm", abi::GLOBAL_OFF_MM_TOTAL_VM),
    (
        "percpu_counter",
        "count",
        abi::GLOBAL_OFF_PERCPU_COUNTER_COUNT,
    ),
    ("linux_binprm", "filename", abi::GLOBAL_OFF_BINPRM_FILENAME),
    ("kernel_siginfo", "si_code", abi::GLOBAL_OFF_SIGINFO_CODE),
];

/// `sock_common` fields the network program reads, and their globals. `struct sock` starts with
/// its `__sk_common`, so these are offsets in `struct sock` too (the loader adds that member's
/// offset all the same).
const SOCK_FIELDS: &[(&str, &str)] = &[
    ("skc_family", abi::GLOBAL_OFF_SKC_FAMILY),
    ("skc_num", abi::GLOBAL_OFF_SKC_NUM),
    ("skc_dport", abi::GLOBAL_OFF_SKC_DPORT),
    ("skc_daddr", abi::GLOBAL_OFF_SKC_DADDR_PLUS1),
    ("skc_rcv_saddr", abi::GLOBAL_OFF_SKC_RCV_SADDR),
    ("skc_v6_daddr", abi::GLOBAL_OFF_SKC_V6_DADDR),
    ("skc_v6_rcv_saddr", abi::GLOBAL_OFF_SKC_V6_RCV_SADDR),
];

impl Offsets {
    /// Reads every field; a missing one is `None` (what needs it is disabled later). Fails only
    /// when BTF cannot be read at all.
    pub(crate) fn from_kernel() -> Result<Self, EbpfError> {
        let btf = btf_rs::Btf::from_file_with_backend(VMLINUX_BTF, btf_rs::Backend::Mmap).map_err(
            |e| EbpfError::Btf {
                reason: error_chain(&e),
            },
        )?;
        let mut fields: Vec<Field> = FIELDS
            .iter()
            .map(|&(ty, field, global)| Field {
                ty,
                field,
                global,
                // 0 means "missing" to the programs; none of these fields is first in its
                // struct on a real kernel, so a 0 would be a bogus layout anyway.
                value: member(&btf, ty, field)
                    .map(|(off, _)| off)
                    .filter(|off| *off != 0),
            })
            .collect();
        // rss_stat is indexed by MM_* constants: only trust it when it is an array of exactly
        // NR_MM_COUNTERS counters, as the programs assume.
        let rss_len = member(&btf, "mm_struct", "rss_stat").and_then(|(_, t)| match t {
            btf_rs::Type::Array(a) => Some(a.len() as u64),
            _ => None,
        });
        if rss_len != Some(abi::NR_MM_COUNTERS) {
            for f in &mut fields {
                if f.global == abi::GLOBAL_OFF_MM_RSS_STAT {
                    f.value = None;
                }
            }
        }
        let size = btf
            .resolve_types_by_name("percpu_counter")
            .ok()
            .and_then(|types| {
                types.into_iter().find_map(|t| match t {
                    btf_rs::Type::Struct(s) => Some(s.size() as u64),
                    _ => None,
                })
            })
            .filter(|s| *s != 0);
        let sk_common = member(&btf, "sock", "__sk_common").map(|(off, _)| off);
        for &(field, global) in SOCK_FIELDS {
            let off = sk_common
                .zip(member(&btf, "sock_common", field))
                .map(|(base, (off, _))| base + off);
            fields.push(Field {
                ty: "sock_common",
                field,
                global,
                // skc_daddr really is at 0: it travels plus one, so that 0 still means missing
                value: if global == abi::GLOBAL_OFF_SKC_DADDR_PLUS1 {
                    off.map(|o| o + 1)
                } else {
                    off.filter(|o| *o != 0)
                },
            });
        }
        fields.push(Field {
            ty: "percpu_counter",
            field: "sizeof",
            global: abi::GLOBAL_SIZE_PERCPU_COUNTER,
            value: size,
        });
        Ok(Self { fields })
    }

    /// The value for a global (`None` when missing).
    pub(crate) fn get(&self, global: &str) -> Option<u64> {
        self.fields
            .iter()
            .find(|f| f.global == global)
            .and_then(|f| f.value)
    }

    /// The first missing field among `globals`.
    pub(super) fn first_missing(&self, globals: &[&str]) -> Option<Field> {
        globals.iter().find_map(|g| {
            self.fields
                .iter()
                .find(|f| f.global == *g && f.value.is_none())
                .copied()
        })
    }
}

/// Byte offset and type of `field` in `struct ty`, looking into anonymous struct/union members.
fn member(btf: &btf_rs::Btf, ty: &str, field: &str) -> Option<(u64, btf_rs::Type)> {
    btf.resolve_types_by_name(ty)
        .ok()?
        .iter()
        .find_map(|t| match t {
            btf_rs::Type::Struct(s) => find_member(btf, s, field, 0, 0),
            _ => None,
        })
}

fn find_member(
    btf: &btf_rs::Btf,
    s: &btf_rs::Struct,
    field: &str,
    base_bits: u64,
    depth: u32,
) -> Option<(u64, btf_rs::Type)> {
    if depth > 8 {
        return None;
    }
    for m in &s.members {
        let bits = base_bits + u64::from(m.bit_offset());
        let name = btf.resolve_name(m).unwrap_or_default();
        if name == field {
            // Bitfields and sub-byte offsets cannot be read with a byte offset.
            if m.bitfield_size().unwrap_or(0) != 0 || !bits.is_multiple_of(8) {
                return None;
            }
            return Some((bits / 8, btf.resolve_chained_type(m).ok()?));
        }
        if !name.is_empty() {
            continue;
        }
        // Anonymous member: follow typedefs/qualifiers to the struct or union.
        let mut t = btf.resolve_chained_type(m).ok()?;
        for _ in 0..8 {
            t = match &t {
                btf_rs::Type::Struct(inner) | btf_rs::Type::Union(inner) => {
                    if let Some(found) = find_member(btf, inner, field, bits, depth + 1) {
                        return Some(found);
                    }
                    break;
                }
                btf_rs::Type::Typedef(x) => btf.resolve_chained_type(x).ok()?,
                btf_rs::Type::Volatile(x) | btf_rs::Type::Const(x) | btf_rs::Type::Restrict(x) => {
                    btf.resolve_chained_type(x).ok()?
                }
                btf_rs::Type::TypeTag(x) => btf.resolve_chained_type(x).ok()?,
                _ => break,
            };
        }
    }
    None
}
