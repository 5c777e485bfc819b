//! The few `bpf(2)` commands the AF_XDP backend needs (create a map, change
//! an element, load a program, attach it to an interface) and a small
//! assembler for the XDP program it loads, which lvsd builds at run time
//! from the map descriptors instead of shipping an object file.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
#[cfg(test)]
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

/// Map types.
pub const MAP_HASH: u32 = 1;
pub const MAP_XSKMAP: u32 = 17;
/// Elements allocated as they are added.
const BPF_F_NO_PREALLOC: u32 = 1;
const PROG_TYPE_XDP: u32 = 6;
const ATTACH_XDP: u32 = 37;

/// The `union bpf_attr` argument: large enough for every command used here
/// and zero past the fields each one sets, as the kernel requires.
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Attr {
    fn new() -> Self {
        Attr([0; 128])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable bpf_attr of the size passed; every
    // pointer stored in it points at memory the caller keeps alive for the
    // call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_of(r: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(r).map_err(|_| io::Error::other("bpf returned a bad fd"))?;
    // SAFETY: the kernel just returned this descriptor to us; nothing else
    // owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A BPF map, closed on drop.
pub struct Map {
    fd: OwnedFd,
    key_size: usize,
    value_size: usize,
}

impl Map {
    pub fn create(kind: u32, key_size: u32, value_size: u32, max: u32) -> io::Result<Map> {
        let flags = if kind == MAP_HASH {
            BPF_F_NO_PREALLOC
        } else {
            0
        };
        let mut a = Attr::new();
        a.u32(0, kind)
            .u32(4, key_size)
            .u32(8, value_size)
            .u32(12, max)
            .u32(16, flags);
        Ok(Map {
            fd: fd_of(bpf(BPF_MAP_CREATE, &mut a)?)?,
            key_size: key_size as usize,
            value_size: value_size as usize,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        if key.len() != self.key_size || value.len() != self.value_size {
            return Err(io::Error::other("bpf map key or value of the wrong size"));
        }
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32)
            .u64(8, key.as_ptr() as u64)
            .u64(16, value.as_ptr() as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(|_| ())
    }

    /// Whether the map holds `key` (tests look inside the maps with it).
    #[cfg(test)]
    pub fn contains(&self, key: &[u8]) -> bool {
        let mut value = vec![0u8; self.value_size];
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32)
            .u64(8, key.as_ptr() as u64)
            .u64(16, value.as_mut_ptr() as u64);
        key.len() == self.key_size && bpf(BPF_MAP_LOOKUP_ELEM, &mut a).is_ok()
    }

    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        if key.len() != self.key_size {
            return Err(io::Error::other("bpf map key of the wrong size"));
        }
        let mut a = Attr::new();
        a.u32(0, self.fd() as u32).u64(8, key.as_ptr() as u64);
        bpf(BPF_MAP_DELETE_ELEM, &mut a).map(|_| ())
    }
}

/// Loads an XDP program; on refusal the error carries the end of the
/// verifier's log (asked for only then: a log that outgrows its buffer
/// would itself fail the load).
pub fn load_xdp(insns: &[Insn], name: &str) -> io::Result<OwnedFd> {
    match load(insns, name, None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; 256 * 1024];
            let again = load(insns, name, Some(&mut log));
            let end = log.iter().position(|&b| b == 0).unwrap_or(0);
            let text = String::from_utf8_lossy(&log[..end]);
            let tail: Vec<&str> = text.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            match again {
                Ok(fd) => Ok(fd),
                Err(_) => Err(io::Error::new(
                    first.kind(),
                    format!("{first}; verifier: {}", tail.join(" | ")),
                )),
            }
        }
    }
}

fn load(insns: &[Insn], name: &str, log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = b"GPL\0";
    let mut a = Attr::new();
    a.u32(0, PROG_TYPE_XDP)
        .u32(4, u32::try_from(insns.len()).unwrap_or(u32::MAX))
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(68, ATTACH_XDP);
    if let Some(log) = log {
        a.u32(24, 1)
            .u32(28, u32::try_from(log.len()).unwrap_or(0))
            .u64(32, log.as_mut_ptr() as u64);
    }
    let n = name.len().min(15);
    a.0[48..48 + n].copy_from_slice(&name.as_bytes()[..n]);
    fd_of(bpf(BPF_PROG_LOAD, &mut a)?)
}

/// Attaches an XDP program to an interface: in the driver when it supports
/// XDP, generically otherwise, or only in the driver (`driver_only`).
/// Detached when the returned link closes, which the kernel also does if
/// lvsd dies.
pub fn attach_xdp(prog: &OwnedFd, ifindex: u32, driver_only: bool) -> io::Result<OwnedFd> {
    /// XDP_FLAGS_DRV_MODE.
    const DRIVER_MODE: u32 = 1 << 2;
    let mut a = Attr::new();
    a.u32(0, prog.as_raw_fd() as u32)
        .u32(4, ifindex)
        .u32(8, ATTACH_XDP)
        .u32(12, if driver_only { DRIVER_MODE } else { 0 });
    fd_of(bpf(BPF_LINK_CREATE, &mut a)?)
}

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

/// Registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum R {
    R0 = 0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    /// The frame pointer (read only).
    R10,
}

/// Access sizes.
#[derive(Debug, Clone, Copy)]
pub enum Size {
    B = 0x10,
    H = 0x08,
    W = 0x00,
}

/// Jump conditions against an immediate or a register.
#[derive(Debug, Clone, Copy)]
pub enum Cond {
    Eq = 0x10,
    Gt = 0x20,
    Ne = 0x50,
}

const CLS_LD: u8 = 0x00;
const CLS_LDX: u8 = 0x01;
const CLS_ST: u8 = 0x02;
const CLS_STX: u8 = 0x03;
const CLS_JMP: u8 = 0x05;
const CLS_JMP32: u8 = 0x06;
const CLS_ALU: u8 = 0x04;
const CLS_ALU64: u8 = 0x07;
const MODE_MEM: u8 = 0x60;
const MODE_IMM: u8 = 0x00;
const SRC_X: u8 = 0x08;
const OP_ADD: u8 = 0x00;
const OP_AND: u8 = 0x50;
const OP_MOV: u8 = 0xb0;
const OP_MUL: u8 = 0x20;
const OP_RSH: u8 = 0x70;
const OP_MOD: u8 = 0x90;
const OP_XOR: u8 = 0xa0;
const OP_END: u8 = 0xd0;
/// With OP_END: convert to big-endian.
const TO_BE: u8 = 0x08;
const OP_JA: u8 = 0x00;
const OP_CALL: u8 = 0x80;
const OP_EXIT: u8 = 0x90;
const PSEUDO_MAP_FD: u8 = 1;

/// Helper function numbers.
pub const HELPER_MAP_LOOKUP: i32 = 1;
pub const HELPER_REDIRECT_MAP: i32 = 51;

/// Builds a program; jumps name labels resolved by [`Asm::finish`].
#[derive(Default)]
pub struct Asm {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    /// (instruction index, label) of each jump to fix up.
    fixups: Vec<(usize, usize)>,
}

/// A jump target.
#[derive(Debug, Clone, Copy)]
pub struct Label(usize);

impl Asm {
    fn emit(&mut self, code: u8, dst: R, src: R, off: i16, imm: i32) -> &mut Self {
        self.insns.push(Insn {
            code,
            regs: (dst as u8) | ((src as u8) << 4),
            off,
            imm,
        });
        self
    }

    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `l` at the next instruction.
    pub fn bind(&mut self, l: Label) -> &mut Self {
        self.labels[l.0] = Some(self.insns.len());
        self
    }

    pub fn mov(&mut self, dst: R, src: R) -> &mut Self {
        self.emit(CLS_ALU64 | OP_MOV | SRC_X, dst, src, 0, 0)
    }
    pub fn mov_imm(&mut self, dst: R, imm: i32) -> &mut Self {
        self.emit(CLS_ALU64 | OP_MOV, dst, R::R0, 0, imm)
    }
    pub fn add_imm(&mut self, dst: R, imm: i32) -> &mut Self {
        self.emit(CLS_ALU64 | OP_ADD, dst, R::R0, 0, imm)
    }
    pub fn and_imm(&mut self, dst: R, imm: i32) -> &mut Self {
        self.emit(CLS_ALU64 | OP_AND, dst, R::R0, 0, imm)
    }
    /// 32-bit: dst += src.
    pub fn add32(&mut self, dst: R, src: R) -> &mut Self {
        self.emit(CLS_ALU | OP_ADD | SRC_X, dst, src, 0, 0)
    }
    /// 32-bit: dst ^= src.
    pub fn xor32(&mut self, dst: R, src: R) -> &mut Self {
        self.emit(CLS_ALU | OP_XOR | SRC_X, dst, src, 0, 0)
    }
    /// 32-bit: dst *= imm.
    pub fn mul32_imm(&mut self, dst: R, imm: i32) -> &mut Self {
        self.emit(CLS_ALU | OP_MUL, dst, R::R0, 0, imm)
    }
    /// 32-bit: dst >>= imm (logical).
    pub fn rsh32_imm(&mut self, dst: R, imm: i32) -> &mut Self {
        self.emit(CLS_ALU | OP_RSH, dst, R::R0, 0, imm)
    }
    /// 32-bit: dst %= imm (unsigned).
    pub fn mod32_imm(&mut self, dst: R, imm: i32) -> &mut Self {
        self.emit(CLS_ALU | OP_MOD, dst, R::R0, 0, imm)
    }
    /// dst = its low `bits` (16 or 32) read as big-endian: a field loaded
    /// from the packet, in host order.
    pub fn from_be(&mut self, dst: R, bits: i32) -> &mut Self {
        self.emit(CLS_ALU | OP_END | TO_BE, dst, R::R0, 0, bits)
    }
    /// dst = *(size *)(src + off)
    pub fn load(&mut self, size: Size, dst: R, src: R, off: i16) -> &mut Self {
        self.emit(CLS_LDX | MODE_MEM | size as u8, dst, src, off, 0)
    }
    /// *(size *)(dst + off) = src
    pub fn store(&mut self, size: Size, dst: R, off: i16, src: R) -> &mut Self {
        self.emit(CLS_STX | MODE_MEM | size as u8, dst, src, off, 0)
    }
    /// *(size *)(dst + off) = imm
    pub fn store_imm(&mut self, size: Size, dst: R, off: i16, imm: i32) -> &mut Self {
        self.emit(CLS_ST | MODE_MEM | size as u8, dst, R::R0, off, imm)
    }
    /// dst = the map with descriptor `fd` (two instruction slots).
    pub fn load_map(&mut self, dst: R, fd: RawFd) -> &mut Self {
        self.emit(CLS_LD | MODE_IMM | 0x18, dst, R::R0, 0, fd);
        if let Some(i) = self.insns.last_mut() {
            i.regs |= PSEUDO_MAP_FD << 4;
        }
        self.emit(0, R::R0, R::R0, 0, 0)
    }
    fn jump_to(&mut self, code: u8, dst: R, src: R, imm: i32, l: Label) -> &mut Self {
        self.fixups.push((self.insns.len(), l.0));
        self.emit(code, dst, src, 0, imm)
    }
    pub fn jmp(&mut self, l: Label) -> &mut Self {
        self.jump_to(CLS_JMP | OP_JA, R::R0, R::R0, 0, l)
    }
    pub fn jmp_imm(&mut self, c: Cond, dst: R, imm: i32, l: Label) -> &mut Self {
        self.jump_to(CLS_JMP | c as u8, dst, R::R0, imm, l)
    }
    /// Compares the low 32 bits of `dst` with `imm` as unsigned 32-bit
    /// values (the 64-bit form sign-extends `imm`).
    pub fn jmp32_imm(&mut self, c: Cond, dst: R, imm: u32, l: Label) -> &mut Self {
        self.jump_to(CLS_JMP32 | c as u8, dst, R::R0, imm as i32, l)
    }
    pub fn jmp_reg(&mut self, c: Cond, dst: R, src: R, l: Label) -> &mut Self {
        self.jump_to(CLS_JMP | c as u8 | SRC_X, dst, src, 0, l)
    }
    pub fn call(&mut self, helper: i32) -> &mut Self {
        self.emit(CLS_JMP | OP_CALL, R::R0, R::R0, 0, helper)
    }
    pub fn exit(&mut self) -> &mut Self {
        self.emit(CLS_JMP | OP_EXIT, R::R0, R::R0, 0, 0)
    }

    /// The program, every jump resolved. Fails on an unbound label or a jump
    /// too far for its 16-bit offset.
    pub fn finish(mut self) -> Result<Vec<Insn>, String> {
        for &(at, l) in &self.fixups {
            let target = self.labels[l].ok_or_else(|| format!("label {l} never bound"))?;
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off =
                i16::try_from(off).map_err(|_| format!("jump from {at} too far"))?;
        }
        Ok(self.insns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel_headers() {
        let mut a = Asm::default();
        let done = a.label();
        a.mov(R::R6, R::R1) // 0xbf, dst 6 src 1
            .load(Size::W, R::R2, R::R6, 4) // 0x61
            .jmp_reg(Cond::Gt, R::R4, R::R3, done) // 0x2d
            .load_map(R::R1, 7) // 0x18, src 1, then an empty slot
            .bind(done)
            .mov_imm(R::R0, 2) // 0xb7
            .exit(); // 0x95
        let p = a.finish().unwrap();
        let codes: Vec<u8> = p.iter().map(|i| i.code).collect();
        assert_eq!(codes, [0xbf, 0x61, 0x2d, 0x18, 0x00, 0xb7, 0x95]);
        assert_eq!(p[0].regs, 0x16);
        assert_eq!(p[1].off, 4);
        assert_eq!(p[2].regs, 0x34);
        assert_eq!(p[2].off, 2, "skips the two map slots");
        assert_eq!((p[3].regs, p[3].imm), (0x11, 7));
    }

    #[test]
    fn unbound_label_is_an_error() {
        let mut a = Asm::default();
        let l = a.label();
        a.jmp(l);
        assert!(a.finish().is_err());
    }
}
