// SPDX-License-Identifier: (Apache-2.0 OR GPL-2.0)
// Vigie's kernel probes: process, file, network, DNS and kernel-integrity
// events from tracepoints, sent to user space through one ring buffer.
//
// Records are variable length: a fixed header (struct ev_hdr) followed by
// TLV fields (u16 type, u16 len, bytes). Paths are sent as their dentry
// components, leaf first; user space reverses and joins them. This keeps
// the programs simple for the verifier and the strings exact (no lossy
// in-kernel formatting).
//
// Syscalls are handled generically: one program is attached to each
// sys_exit_<name> tracepoint of interest, and a table (sc_specs, filled by
// user space, indexed by syscall number) says which arguments are paths,
// fds, sockets or buffers to copy. The arguments are read at exit from the
// registers the task entered with (see syscall_args), so no program runs
// at sys_enter.

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SCRATCH_SIZE 32768
#define OFF_LIMIT 16383
#define STR_MAX 4096
#define COMP_MAX 256
#define PATH_DEPTH 48
#define DATA_MAX 512

enum ev_kind {
	EV_EXEC = 1,
	EV_FORK = 2,
	EV_EXIT = 3,
	EV_SYSCALL = 4,
	EV_WRITE_CLOSE = 5,
	EV_CREATE = 6,
};

enum field_type {
	F_FILENAME = 1,
	F_ARGV = 2,
	F_EXE_COMP = 3,
	F_CWD_COMP = 4,
	F_STR0 = 5, /* F_STR0 + i for string argument i (0..2) */
	F_DIR0_COMP = 8, /* F_DIR0_COMP + i: base directory of string i */
	F_FD_COMP = 11,
	F_SOCK = 12,
	F_SOCKADDR = 13,
	F_DATA = 14,
	F_EXE_META = 15,
	F_CGROUP = 16,
	F_BPF_ATTR = 17,
	F_MNT_MARK = 18, /* separates mount-crossings in a component list */
};

struct ev_hdr {
	u32 kind;
	u32 size;
	u64 ts_boot_ns;
	u32 pid;
	u32 tgid;
	u32 ppid;
	u32 uid;
	u32 gid;
	u32 euid;
	u32 egid;
	u32 loginuid;
	u64 start_boot_ns;	/* group leader start (boot time) */
	u64 parent_start_boot_ns;
	u64 cgroup_id;
	char comm[16];
	s64 ret;
	u32 nr;
	u32 flags;		/* EVF_* */
	u64 args[6];
	u32 netns;		/* network namespace inode; 0: unknown (no nsproxy) */
	u32 pad;
};

#define EVF_ARGV_TRUNC 1

struct exe_meta {
	u64 dev;
	u64 ino;
	s64 size;
	s64 mtime_sec;
	u32 mtime_nsec;
	u32 nlink;
	u64 s_magic;
};

struct sock_info {
	u16 family;
	u16 type;
	u16 protocol;
	u16 lport;		/* host order */
	u16 rport;		/* host order */
	u16 pad[3];
	u8 laddr[16];
	u8 raddr[16];
};

/* One per syscall number, filled by user space. Argument indices are
 * stored +1 so that 0 means "none"; 7 means "the return value". */
struct sc_spec {
	u8 enabled;
	u8 str_arg[3];
	u8 dirfd_arg[3];
	u8 fd_arg;
	u8 sock_arg;
	u8 sockaddr_arg;
	u8 data_kind;		/* 1 buf+ret, 2 msghdr, 3 mmsghdr, 4 bpf attr */
	u8 success_only;
	u8 failure_only;
	u8 dns_only;
	u8 open_kind;		/* open family: write sessions and creates */
	u8 eq_arg;		/* keep only when args[eq_arg] is eq_val[0|1] */
	u64 eq_val[2];
	u8 flags_arg;		/* keep only when args[flags_arg] & flags_mask */
	u8 pad[7];
	u64 flags_mask;
};

/* A syscall's arguments, as the task entered it. */
struct sc_args {
	u64 args[6];
};

struct session_key {
	u32 tgid;
	u32 fd;
};

struct session {
	u64 bytes;
	u64 writes;
};

struct lpm_key {
	u32 prefixlen;
	u8 data[128];
};

struct exe_key {
	char path[128];
};

struct config {
	u32 arg_max;
	u32 self_tgid;
	u32 ignore_self;
	u32 netns_scope;	/* only this network namespace (inode); 0: all */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

/* Lost records per event kind (index = enum ev_kind), counted per CPU. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 8);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, u32);
	__uint(value_size, SCRATCH_SIZE);
} scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 512);
	__type(key, u32);
	__type(value, struct sc_spec);
} sc_specs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct session_key);
	__type(value, struct session);
} sessions SEC(".maps");

/* Noise: path prefixes whose file events are dropped in the kernel. */
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__type(key, struct lpm_key);
	__type(value, u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} noise_paths SEC(".maps");

/* Noise: executables whose file/network/syscall events are dropped. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct exe_key);
	__type(value, u8);
} noise_exes SEC(".maps");

/* Processes running a noise executable (and the agent itself). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u32);
	__type(value, u8);
} muted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct config);
} cfg SEC(".maps");

static __always_inline void count_lost(u32 kind)
{
	u64 *n = bpf_map_lookup_elem(&lost, &kind);
	if (n)
		(*n)++;
}

static __always_inline u8 *get_scratch(void)
{
	u32 cpu = bpf_get_smp_processor_id();
	return bpf_map_lookup_elem(&scratch, &cpu);
}

static __always_inline struct config *get_cfg(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&cfg, &zero);
}

/* Task pointers here are BTF pointers (bpf_get_current_task_btf(), tp_btf
 * arguments): their fields are read with plain loads the JIT guards against
 * faults (a NULL or stale pointer reads as 0), where BPF_CORE_READ makes one
 * bpf_probe_read_kernel helper call per pointer hop. The header alone was a
 * dozen such calls per event, the path walk four per component. */

/* The inode of the task's network namespace; 0 when it has no nsproxy
 * (a task past exit_task_namespaces): user space then asks its table. */
static __always_inline u32 task_netns(struct task_struct *task)
{
	struct nsproxy *ns = task->nsproxy;
	if (!ns)
		return 0;
	return ns->net_ns->ns.inum;
}

/* Scope filter for everything but exec/fork/exit (those always go up: the
 * process table needs out-of-scope ancestors; user space drops their
 * events). An unknown namespace is left to user space. */
static __always_inline bool out_of_scope(struct config *c, struct task_struct *task)
{
	if (!c || !c->netns_scope)
		return false;
	u32 ns = task_netns(task);
	return ns && ns != c->netns_scope;
}

static __always_inline void fill_common(struct ev_hdr *h, struct task_struct *task, u32 kind)
{
	h->kind = kind;
	h->ts_boot_ns = bpf_ktime_get_boot_ns();
	struct task_struct *parent = task->real_parent;
	h->ppid = parent->tgid;
	h->parent_start_boot_ns = parent->group_leader->start_boottime;
	const struct cred *cred = task->cred;
	h->uid = cred->uid.val;
	h->gid = cred->gid.val;
	h->euid = cred->euid.val;
	h->egid = cred->egid.val;
	h->loginuid = task->loginuid.val;
	h->start_boot_ns = task->group_leader->start_boottime;
	h->cgroup_id = task->cgroups->dfl_cgrp->kn->id;
	h->ret = 0;
	h->nr = 0;
	h->flags = 0;
	h->netns = task_netns(task);
	h->pad = 0;
	/* Two loads through the BTF pointer (comm is always NUL-terminated
	 * within its 16 bytes). bpf_get_current_comm copies and pads it byte
	 * by byte: replacing it took about 12 % off the eBPF time of a file
	 * storm (docs/vigie-sensor.md, "Header"). */
	const u64 *comm = (const u64 *)task->comm;
	u64 *out = (u64 *)h->comm;
	out[0] = comm[0];
	out[1] = comm[1];
}

/* The header of an event about `task` (any task). */
static __always_inline void fill_hdr(struct ev_hdr *h, struct task_struct *task, u32 kind)
{
	fill_common(h, task, kind);
	h->pid = task->pid;
	h->tgid = task->tgid;
}

/* The header of an event about the current task (`task` is current). */
static __always_inline void fill_hdr_current(struct ev_hdr *h, struct task_struct *task, u32 kind)
{
	fill_common(h, task, kind);
	u64 id = bpf_get_current_pid_tgid();
	h->pid = (u32)id;
	h->tgid = id >> 32;
}

/* Bound an offset for the verifier. The asm keeps clang from dropping a
 * mask it can prove redundant: the verifier may not know what clang knows. */
#define CLAMP(v) ({ asm volatile("" : "+r"(v)); (v) &= OFF_LIMIT; })
/* Keep a mask clang would drop, so the verifier sees it too. */
#define CLAMP_SHAPE(v) ({ asm volatile("" : "+r"(v)); (v) &= (SCRATCH_SIZE - 1); })

/* Append a TLV header; returns the offset of its payload. */
static __always_inline u32 tlv_begin(u8 *buf, u32 off, u16 type, u16 len)
{
	CLAMP(off);
	*(u16 *)(buf + off) = type;
	*(u16 *)(buf + off + 2) = len;
	return off + 4;
}

static __always_inline u32 put_kstr(u8 *buf, u32 off, u16 type, const void *src, u32 max)
{
	if (off > OFF_LIMIT)
		return off;
	CLAMP(off);
	asm volatile("" : "+r"(max));
	long n = bpf_probe_read_kernel_str(buf + off + 4, max & (STR_MAX - 1), src);
	if (n < 0)
		n = 0;
	tlv_begin(buf, off, type, n);
	/* Masked so every offset has the same shape for the verifier (states
	 * then compare equal and prune); never wraps: off <= OFF_LIMIT. */
	u32 r = off + 4 + (n & (STR_MAX - 1));
	asm volatile("" : "+r"(r)); /* keep the mask: clang knows it is redundant */
	return r & (SCRATCH_SIZE - 1);
}

static __always_inline u32 put_ustr(u8 *buf, u32 off, u16 type, const void *src)
{
	if (off > OFF_LIMIT)
		return off;
	CLAMP(off);
	long n = bpf_probe_read_user_str(buf + off + 4, STR_MAX - 1, src);
	if (n < 0)
		n = 0;
	tlv_begin(buf, off, type, n);
	/* Masked so every offset has the same shape for the verifier (states
	 * then compare equal and prune); never wraps: off <= OFF_LIMIT. */
	u32 r = off + 4 + (n & (STR_MAX - 1));
	asm volatile("" : "+r"(r)); /* keep the mask: clang knows it is redundant */
	return r & (SCRATCH_SIZE - 1);
}

/* put_ustr as a global function (verified once, not once per caller
 * path), which also says whether the string is absolute: STR_ABSOLUTE is
 * set in the returned offset when the copy starts with '/'. Told from the
 * copy, not by a second read of user memory; a failed read leaves the copy
 * zeroed, which reads as relative (an empty path). */
#define STR_ABSOLUTE 0x80000000u
__noinline u32 put_ustr_g(u32 off, u32 type, u64 src)
{
	u8 *buf = get_scratch();
	if (!buf || off > OFF_LIMIT)
		return off;
	u32 q = off;
	CLAMP(q);
	off = put_ustr(buf, q, type, (const void *)src);
	return buf[q + 4] == '/' ? off | STR_ABSOLUTE : off;
}

static __always_inline u32 put_kbytes(u8 *buf, u32 off, u16 type, const void *src, u32 len)
{
	if (off > OFF_LIMIT)
		return off;
	CLAMP(off);
	asm volatile("" : "+r"(len));
	len &= (STR_MAX - 1);
	if (bpf_probe_read_kernel(buf + off + 4, len, src) < 0)
		len = 0;
	tlv_begin(buf, off, type, len);
	u32 r = off + 4 + len;
	asm volatile("" : "+r"(r));
	return r & (SCRATCH_SIZE - 1);
}

static __always_inline u32 put_ubytes(u8 *buf, u32 off, u16 type, const void *src, u32 len)
{
	if (off > OFF_LIMIT)
		return off;
	CLAMP(off);
	asm volatile("" : "+r"(len));
	len &= (STR_MAX - 1);
	if (bpf_probe_read_user(buf + off + 4, len, src) < 0)
		len = 0;
	tlv_begin(buf, off, type, len);
	u32 r = off + 4 + len;
	asm volatile("" : "+r"(r));
	return r & (SCRATCH_SIZE - 1);
}

/* Walk a path up to the root, crossing mounts, one TLV per component.
 * The walk runs under bpf_loop so the verifier checks one step, not
 * PATH_DEPTH unrolled copies (which exceeded its instruction budget).
 * Dentries and mounts are BTF pointers (bpf_core_cast): plain guarded
 * loads, one helper call per component (its name). */
struct walk_ctx {
	u8 *buf;
	struct dentry *d;
	struct mount *m;
	struct dentry *mnt_root;	/* m's root, read once per mount */
	u32 off;
	u16 type;
};

static long walk_step(u32 i, struct walk_ctx *w)
{
	struct dentry *d = w->d;
	struct dentry *mnt_root = w->mnt_root;
	struct dentry *parent = d->d_parent;
	if (d == mnt_root || d == parent) {
		struct mount *m = w->m;
		struct mount *mp = m->mnt_parent;
		if (mp == m || d != mnt_root) {
			/* Real root, or a pseudo filesystem (pipe, memfd):
			 * name the top dentry if it is not the mount root. */
			if (d != mnt_root)
				w->off = put_kstr(w->buf, w->off, w->type, d->d_name.name, COMP_MAX);
			return 1;
		}
		w->d = m->mnt_mountpoint;
		w->m = mp;
		w->mnt_root = mp->mnt.mnt_root;
		return 0;
	}
	w->off = put_kstr(w->buf, w->off, w->type, d->d_name.name, COMP_MAX);
	w->d = parent;
	return 0;
}

/* A global function: the verifier checks it once, whatever the caller's
 * state (inlined, the walk was re-verified for every caller path and blew
 * the instruction budget). Its arguments must be scalars: pointers travel
 * as numbers and are made BTF pointers again here (bpf_core_cast:
 * read-only, fault-guarded loads). The path is `file`'s when it is set,
 * else (dentry, vfsmnt)'s. */
__noinline int put_path_g(u32 off, u32 type, u64 file, u64 dentry, u64 vfsmnt)
{
	u8 *buf = get_scratch();
	if (!buf)
		return off;
	if (file) {
		struct file *f = bpf_core_cast((void *)file, struct file);
		dentry = (u64)f->f_path.dentry;
		vfsmnt = (u64)f->f_path.mnt;
	}
	if (!dentry || !vfsmnt)
		return off;
	struct mount *m = bpf_core_cast((void *)(vfsmnt - bpf_core_field_offset(struct mount, mnt)), struct mount);
	struct walk_ctx w = {
		.buf = buf,
		.d = bpf_core_cast((void *)dentry, struct dentry),
		.m = m,
		.mnt_root = m->mnt.mnt_root,
		.off = off,
		.type = type,
	};
	bpf_loop(PATH_DEPTH, walk_step, &w, 0);
	return w.off;
}

static __always_inline u32 put_path(u8 *buf, u32 off, u16 type, u64 file, u64 d, u64 vm)
{
	u32 r = put_path_g(off, type, file, d, vm);
	asm volatile("" : "+r"(r));
	return r & (SCRATCH_SIZE - 1);
}

static __always_inline struct file *fd_file(struct task_struct *task, u64 fd)
{
	struct fdtable *fdt = task->files->fdt;
	struct file **fds = fdt->fd;
	unsigned int max = fdt->max_fds;
	struct file *f = NULL;
	if (fd >= max)
		return NULL;
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

/* `f` is a number (read with bpf_probe_read_kernel), not a BTF pointer. */
static __always_inline u32 put_file_path(u8 *buf, u32 off, u16 type, struct file *f)
{
	if (!f)
		return off;
	return put_path(buf, off, type, (u64)f, 0, 0);
}

static __always_inline u32 put_cwd(u8 *buf, u32 off, u16 type, struct task_struct *task)
{
	/* Probe reads: numbers for put_path_g (BTF pointers may not be
	 * passed to a global function). */
	return put_path(buf, off, type, 0, (u64)BPF_CORE_READ(task, fs, pwd.dentry),
			(u64)BPF_CORE_READ(task, fs, pwd.mnt));
}

/* User space is woken only once this much is waiting (it also polls every
 * few milliseconds, so a quiet host's events wait at most that long). With
 * the default (wake whenever the reader had caught up), a reader that keeps
 * up is woken for every record: three context switches per exec under an
 * exec storm, on the CPUs the storm runs on. */
#define WAKEUP_BYTES (128 * 1024)

static __always_inline void emit(u8 *buf, u32 off, u32 kind)
{
	struct ev_hdr *h = (struct ev_hdr *)buf;
	if (off > SCRATCH_SIZE - 1)
		off = SCRATCH_SIZE - 1;
	h->size = off;
	/* Wake the reader when the waiting data crosses a multiple of
	 * WAKEUP_BYTES, not for every record past the first: each wake-up is
	 * an IRQ-work self-interrupt on the writer's CPU (a VM exit on
	 * virtual machines), and a reader that lags behind a storm was
	 * interrupted once per record for nothing. */
	u64 avail = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA);
	u64 flags = (avail + off) / WAKEUP_BYTES != avail / WAKEUP_BYTES
		? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_output(&events, buf, off & (SCRATCH_SIZE - 1), flags) != 0)
		count_lost(kind);
}

static __always_inline bool is_muted(u32 tgid)
{
	return bpf_map_lookup_elem(&muted, &tgid) != NULL;
}

// ---------------------------------------------------------------------------
// Processes

SEC("tracepoint/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	u8 *buf = get_scratch();
	struct config *c = get_cfg();
	if (!buf || !c)
		return 0;
	struct ev_hdr *h = (struct ev_hdr *)buf;
	fill_hdr_current(h, task, EV_EXEC);
	u32 off = sizeof(struct ev_hdr);

	/* The filename as execve resolved it (a script path for scripts). */
	unsigned short loc = ctx->__data_loc_filename & 0xFFFF;
	off = put_kstr(buf, off, F_FILENAME, (void *)ctx + loc, STR_MAX - 1);

	/* Mute or unmute this process according to the noise list. */
	struct exe_key ek = {};
	bpf_probe_read_kernel_str(&ek.path, sizeof(ek.path), (void *)ctx + loc);
	u32 tgid = h->tgid;
	if (bpf_map_lookup_elem(&noise_exes, &ek)) {
		u8 one = 1;
		bpf_map_update_elem(&muted, &tgid, &one, BPF_ANY);
	} else if (tgid != c->self_tgid || !c->ignore_self) {
		bpf_map_delete_elem(&muted, &tgid);
	}

	/* argv as laid out by execve: NUL-separated, bounded. */
	struct mm_struct *mm = BPF_CORE_READ(task, mm);
	unsigned long as = BPF_CORE_READ(mm, arg_start);
	unsigned long ae = BPF_CORE_READ(mm, arg_end);
	u32 len = ae > as ? ae - as : 0;
	u32 max = c->arg_max;
	if (max > STR_MAX - 1)
		max = STR_MAX - 1;
	if (len > max) {
		len = max;
		h->flags |= EVF_ARGV_TRUNC;
	}
	off = put_ubytes(buf, off, F_ARGV, (void *)as, len);

	struct file *exe = BPF_CORE_READ(mm, exe_file);
	off = put_file_path(buf, off, F_EXE_COMP, exe);
	off = put_cwd(buf, off, F_CWD_COMP, task);

	struct exe_meta meta = {};
	struct inode *ino = BPF_CORE_READ(exe, f_inode);
	meta.dev = BPF_CORE_READ(ino, i_sb, s_dev);
	meta.ino = BPF_CORE_READ(ino, i_ino);
	meta.size = BPF_CORE_READ(ino, i_size);
	meta.mtime_sec = BPF_CORE_READ(ino, i_mtime_sec);
	meta.mtime_nsec = BPF_CORE_READ(ino, i_mtime_nsec);
	meta.nlink = BPF_CORE_READ(ino, __i_nlink);
	meta.s_magic = BPF_CORE_READ(ino, i_sb, s_magic);
	if (off <= OFF_LIMIT) {
		u32 p = tlv_begin(buf, off, F_EXE_META, sizeof(meta));
		CLAMP(p);
		__builtin_memcpy(buf + p, &meta, sizeof(meta));
		off = p + sizeof(meta);
	}
	off = put_kstr(buf, off, F_CGROUP, BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, name), COMP_MAX);
	emit(buf, off, EV_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	/* Threads are not processes. */
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;
	u8 *buf = get_scratch();
	if (!buf)
		return 0;
	struct ev_hdr *h = (struct ev_hdr *)buf;
	fill_hdr(h, child, EV_FORK);
	/* The child's start time: it is its own group leader. */
	h->start_boot_ns = BPF_CORE_READ(child, start_boottime);
	emit(buf, sizeof(struct ev_hdr), EV_FORK);
	return 0;
}

SEC("tracepoint/sched/sched_process_exit")
int handle_exit(struct trace_event_raw_sched_process_exit *ctx)
{
	if (!ctx->group_dead)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	u8 *buf = get_scratch();
	if (!buf)
		return 0;
	struct ev_hdr *h = (struct ev_hdr *)buf;
	fill_hdr_current(h, task, EV_EXIT);
	h->ret = BPF_CORE_READ(task, exit_code);
	if (h->ret == 0)
		h->ret = BPF_CORE_READ(task, signal, group_exit_code);
	emit(buf, sizeof(struct ev_hdr), EV_EXIT);
	return 0;
}

// ---------------------------------------------------------------------------
// Write sessions: counted in the kernel, one event at close.

static __always_inline int count_write(u64 fd, u64 bytes)
{
	struct session_key k = { .tgid = bpf_get_current_pid_tgid() >> 32, .fd = fd };
	struct session *s = bpf_map_lookup_elem(&sessions, &k);
	if (s) {
		__sync_fetch_and_add(&s->bytes, bytes);
		__sync_fetch_and_add(&s->writes, 1);
	}
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_write")
int handle_write(struct trace_event_raw_sys_enter *ctx)
{
	return count_write(ctx->args[0], ctx->args[2]);
}

/* writev/pwrite64/pwritev: the count is not always an argument; count 0
 * bytes but the write itself. */
SEC("tracepoint/syscalls/sys_enter_pwrite64")
int handle_writev(struct trace_event_raw_sys_enter *ctx)
{
	return count_write(ctx->args[0], 0);
}

SEC("tracepoint/syscalls/sys_enter_close")
int handle_close(struct trace_event_raw_sys_enter *ctx)
{
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct session_key k = { .tgid = tgid, .fd = ctx->args[0] };
	struct session *s = bpf_map_lookup_elem(&sessions, &k);
	if (!s)
		return 0;
	u64 writes = s->writes, bytes = s->bytes;
	bpf_map_delete_elem(&sessions, &k);
	if (writes == 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	/* A session opened in scope, then setns() elsewhere. */
	if (out_of_scope(get_cfg(), task))
		return 0;
	u8 *buf = get_scratch();
	if (!buf)
		return 0;
	struct ev_hdr *h = (struct ev_hdr *)buf;
	fill_hdr_current(h, task, EV_WRITE_CLOSE);
	h->args[0] = ctx->args[0];
	h->args[1] = bytes;
	h->args[2] = writes;
	u32 off = put_file_path(buf, sizeof(struct ev_hdr), F_FD_COMP, fd_file(task, ctx->args[0]));
	emit(buf, off, EV_WRITE_CLOSE);
	return 0;
}

// ---------------------------------------------------------------------------
// Generic syscalls

/* Argument idx (1-based); a switch keeps every stack access constant. */
static __always_inline u64 nth_arg(struct sc_args *p, u8 idx)
{
	switch (idx) {
	case 1: return p->args[0];
	case 2: return p->args[1];
	case 3: return p->args[2];
	case 4: return p->args[3];
	case 5: return p->args[4];
	case 6: return p->args[5];
	default: return 0;
	}
}

/* The arguments of the syscall the task is leaving. The registers saved
 * at entry (pt_regs) are only written back at the return to user space,
 * after sys_exit: reading them there replaces a sys_enter program that
 * saved the arguments for sys_exit (its run and a task storage slot per
 * syscall: a sixth of the eBPF time of a file storm, 600 -> 495 ms, plus
 * its tracepoint). x86-64: the fourth argument travels in r10, not rcx. */
static __always_inline void syscall_args(struct task_struct *task, struct sc_args *p)
{
	struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
	p->args[0] = PT_REGS_PARM1_SYSCALL(regs);
	p->args[1] = PT_REGS_PARM2_SYSCALL(regs);
	p->args[2] = PT_REGS_PARM3_SYSCALL(regs);
	p->args[3] = PT_REGS_PARM4_SYSCALL(regs);
	p->args[4] = PT_REGS_PARM5_SYSCALL(regs);
	p->args[5] = PT_REGS_PARM6_SYSCALL(regs);
}

static __always_inline u64 arg_or_ret(struct sc_args *p, s64 ret, u8 idx)
{
	if (idx == 7)
		return ret;
	return nth_arg(p, idx);
}

static __always_inline void read_sock(struct sock_info *si, struct file *f)
{
	struct socket *sock = BPF_CORE_READ(f, private_data);
	struct sock *sk = BPF_CORE_READ(sock, sk);
	si->family = BPF_CORE_READ(sk, __sk_common.skc_family);
	si->type = BPF_CORE_READ(sk, sk_type);
	si->protocol = BPF_CORE_READ(sk, sk_protocol);
	si->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	si->rport = __builtin_bswap16(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (si->family == 2) {
		bpf_probe_read_kernel(si->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_probe_read_kernel(si->raddr, 4, &sk->__sk_common.skc_daddr);
	} else if (si->family == 10) {
		bpf_probe_read_kernel(si->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_probe_read_kernel(si->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	}
}

/* The port of a user sockaddr (AF_INET/AF_INET6), host order, 0 if none. */
static __always_inline u16 sockaddr_port(const void *uaddr)
{
	u16 fam = 0, port = 0;
	if (!uaddr)
		return 0;
	bpf_probe_read_user(&fam, 2, uaddr);
	if (fam != 2 && fam != 10)
		return 0;
	bpf_probe_read_user(&port, 2, uaddr + 2);
	return __builtin_bswap16(port);
}

/* Is the absolute path copied at `q` (a TLV of `len` bytes with its NUL)
 * under a noise prefix? The LPM key is built in place: its prefix length
 * takes the TLV header's four bytes for the lookup, then the header is put
 * back. A path longer than the key compares by its first bytes. */
static __always_inline bool is_noise_path(u8 *buf, u32 q, u16 len)
{
	u32 hdr = *(u32 *)(buf + q);
	u32 bits = len > 1 ? (u32)(len - 1) * 8 : 0;
	if (bits > sizeof(((struct lpm_key *)0)->data) * 8)
		bits = sizeof(((struct lpm_key *)0)->data) * 8;
	*(u32 *)(buf + q) = bits;
	bool hit = bpf_map_lookup_elem(&noise_paths, buf + q) != NULL;
	*(u32 *)(buf + q) = hdr;
	return hit;
}

SEC("tracepoint/syscalls/sys_exit_generic")
int handle_sys_exit(struct trace_event_raw_sys_exit *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	/* The agent's own syscalls (its content-sampling opens, its output)
	 * before any other work. */
	struct config *c = get_cfg();
	if (!c || (c->ignore_self && (u32)(id >> 32) == c->self_tgid))
		return 0;
	u32 nr = ctx->id;
	struct sc_spec *sp = bpf_map_lookup_elem(&sc_specs, &nr);
	if (!sp || !sp->enabled)
		return 0;
	/* Outcome filters first: a successful execve has replaced the
	 * registers its arguments were in (failure_only keeps only failed
	 * ones, whose registers are the caller's). */
	s64 ret = ctx->ret;
	if (sp->success_only && ret < 0 && ret != -115 /* EINPROGRESS */)
		return 0;
	if (sp->failure_only && ret >= 0)
		return 0;
	struct task_struct *task = bpf_get_current_task_btf();
	struct sc_args p = {};
	syscall_args(task, &p);
	if (sp->eq_arg && sp->eq_arg <= 6) {
		u64 v = nth_arg(&p, sp->eq_arg);
		if (v != sp->eq_val[0] && v != sp->eq_val[1])
			return 0;
	}
	if (sp->flags_arg && sp->flags_arg <= 6) {
		u64 v = nth_arg(&p, sp->flags_arg);
		if (!(v & sp->flags_mask))
			return 0;
	}
	if (is_muted(id >> 32))
		return 0;
	/* Other namespaces' syscalls never take a write session or a
	 * ring-buffer record. */
	if (out_of_scope(c, task))
		return 0;
	u8 *buf = get_scratch();
	if (!buf)
		return 0;
	struct ev_hdr *h = (struct ev_hdr *)buf;

	/* Noise filter on absolute path arguments (first string). Other
	 * syscalls check the copy their record takes (below): one read of
	 * the user string instead of two. */
	if (sp->open_kind && sp->str_arg[0]) {
		struct lpm_key lk = {};
		const void *s = (const void *)arg_or_ret(&p, ret, sp->str_arg[0]);
		long n = bpf_probe_read_user_str(lk.data, sizeof(lk.data), s);
		if (n > 1 && lk.data[0] == '/') {
			lk.prefixlen = (n - 1) * 8;
			if (bpf_map_lookup_elem(&noise_paths, &lk))
				return 0;
		}
	}

	struct file *ret_file = NULL;
	u32 kind = EV_SYSCALL;
	if (sp->open_kind) {
		/* Open family: start a write session; report creation. */
		if (ret < 0)
			return 0;
		ret_file = fd_file(task, ret);
		if (!ret_file)
			return 0;
		struct file *bf = bpf_core_cast(ret_file, struct file);
		u32 mode = bf->f_mode;
		umode_t imode = bf->f_inode->i_mode;
		if ((imode & 00170000) != 0100000)	/* regular files only */
			return 0;
		if (mode & 0x2 /* FMODE_WRITE */) {
			struct session_key k = { .tgid = id >> 32, .fd = ret };
			struct session s = {};
			bpf_map_update_elem(&sessions, &k, &s, BPF_ANY);
		}
		if (!(mode & 0x100000 /* FMODE_CREATED */))
			return 0;
		kind = EV_CREATE;
	}

	struct sock_info si = {};
	bool have_sock = false;
	if (sp->sock_arg) {
		struct file *f = fd_file(task, arg_or_ret(&p, ret, sp->sock_arg));
		if (!f)
			return 0;
		umode_t imode = BPF_CORE_READ(f, f_inode, i_mode);
		if ((imode & 00170000) != 0140000)	/* not a socket */
			return 0;
		read_sock(&si, f);
		have_sock = true;
		if (si.family != 2 && si.family != 10)
			return 0;
	}

	/* DNS: keep only traffic to or from port 53. */
	const void *data = NULL;
	u32 data_len = 0;
	const void *uaddr = sp->sockaddr_arg ? (const void *)arg_or_ret(&p, ret, sp->sockaddr_arg) : NULL;
	if (sp->data_kind == 1) {
		data = (const void *)p.args[1];
		data_len = ret > 0 ? ret : 0;
	} else if (sp->data_kind == 2 || sp->data_kind == 3) {
		/* struct msghdr (or the first of an mmsghdr vector). */
		struct user_msghdr mh = {};
		bpf_probe_read_user(&mh, sizeof(mh), (const void *)p.args[1]);
		uaddr = mh.msg_name;
		struct iovec iov = {};
		bpf_probe_read_user(&iov, sizeof(iov), mh.msg_iov);
		data = iov.iov_base;
		data_len = iov.iov_len;
		if (sp->data_kind == 2 && ret >= 0 && (u64)ret < data_len)
			data_len = ret;
	}
	if (sp->dns_only) {
		u16 port = sockaddr_port(uaddr);
		if (port != 53 && !(have_sock && (si.rport == 53 || si.lport == 53)))
			return 0;
		if (data_len == 0)
			return 0;
	}

	fill_hdr_current(h, task, kind);
	h->nr = nr;
	h->ret = ret;
	for (int i = 0; i < 6; i++)
		h->args[i] = p.args[i];
	u32 off = sizeof(struct ev_hdr);

	bool need_cwd = false;
	for (int i = 0; i < 3; i++) {
		u8 sa = sp->str_arg[i];
		/* A create names its file by the descriptor's path (F_FD_COMP,
		 * walked below): the path as given, and its base directory,
		 * would be copied for nothing. */
		if (!sa || sp->open_kind)
			continue;
		const char *s = (const char *)arg_or_ret(&p, ret, sa);
		u32 r = put_ustr_g(off, F_STR0 + i, (u64)s);
		bool absolute = r & STR_ABSOLUTE;
		off = r;
		CLAMP_SHAPE(off);
		if (absolute)
			continue;
		/* Relative: send its base directory (dirfd, or the cwd). */
		u8 da = sp->dirfd_arg[i];
		s32 dfd = da ? (s32)arg_or_ret(&p, ret, da) : -100;
		if (dfd == -100)
			need_cwd = true;
		else
			off = put_file_path(buf, off, F_DIR0_COMP + i, fd_file(task, dfd));
	}
	/* The first string, when copied, is the first field after the
	 * header: checked here, at a constant offset (inside the loop the
	 * check multiplied the verifier's states past its budget). */
	if (sp->str_arg[0] && !sp->open_kind) {
		u32 q = sizeof(struct ev_hdr);
		u16 len = *(u16 *)(buf + q + 2);
		if (len > 1 && buf[q + 4] == '/' && is_noise_path(buf, q, len))
			return 0;
	}
	if (need_cwd)
		off = put_cwd(buf, off, F_CWD_COMP, task);
	if (sp->fd_arg) {
		struct file *f = ret_file ? ret_file : fd_file(task, arg_or_ret(&p, ret, sp->fd_arg));
		off = put_file_path(buf, off, F_FD_COMP, f);
	}
	if (have_sock && off <= OFF_LIMIT) {
		u32 q = tlv_begin(buf, off, F_SOCK, sizeof(si));
		CLAMP(q);
		__builtin_memcpy(buf + q, &si, sizeof(si));
		off = q + sizeof(si);
	}
	if (uaddr)
		off = put_ubytes(buf, off, F_SOCKADDR, uaddr, 28);
	if (data && data_len) {
		if (data_len > DATA_MAX)
			data_len = DATA_MAX;
		off = put_ubytes(buf, off, F_DATA, data, data_len);
	}
	if (sp->data_kind == 4)
		off = put_ubytes(buf, off, F_BPF_ATTR, (const void *)p.args[1], 64);
	emit(buf, off, kind);
	return 0;
}
