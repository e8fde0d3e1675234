#!/bin/sh
# ftrace-setup.sh: set up tracefs for a dma-buf recording that dmaspec's ftrace reader reads.
#
#   ftrace-setup.sh start [--btf|--argn|--regs] [--function] [--syscalls] [--pid PID] [--buffer-kb N]
#   ftrace-setup.sh stop [-o FILE]          # stop, save the trace to FILE, warn about lost events
#   ftrace-setup.sh clean                   # remove the probes, reset the tracer, empty the buffer
#   ftrace-setup.sh print-kprobes [--btf|--argn|--regs] [--arch x86_64|arm64]
#
# Offsets for --argn/--regs (struct fields read without BTF names) come from, in this order:
#   --offsets FILE (lines "struct.member OFFSET"), pahole on --vmlinux FILE or /sys/kernel/btf/vmlinux,
#   --assume-offsets (the 64-bit layouts of Linux 6.1-6.18 built in below). A field whose offset is
#   known none of these ways is left out, and the script says which.
#
# Probe definitions follow ../shared/real-traces/kprobes-6.12.txt (group "dmaspec"): the entry event is
# named after the kernel function, the return event is <function>_ret, fields are named after the
# function's parameters, and return events carry ret=$retval. Extras the reader uses: file= and resv= on
# dma_buf_export_ret (the dma-buf's struct file, to link file-based fops to the buffer), flags= on
# dma_buf_ioctl (a user-memory fetch of the SYNC/sync-file flags), vaddr= on the vmap/vunmap events.
# A field marked "?" in the table is dropped if the kernel rejects it (e.g. no "+u" user fetch), and a
# BTF definition the kernel rejects is retried with $argN; a function the kernel lacks is skipped.
#
# $argN is the same on x86-64 and arm64 (the kernel maps it to the ABI's argument registers); only
# --regs, for kernels without $argN, names registers: %di %si %dx %cx %r8 %r9 or %x0..%x5.

set -euf  # -f: the field lists are split on spaces and must not be globbed ('?file=...')

GROUP=dmaspec
PROG=${0##*/}
PAHOLE=${PAHOLE:-pahole}
SYSCALLS="close close_range dup dup2 dup3 fcntl mmap munmap ioctl lseek execve exit_group clone clone3"

warn() { printf '%s: %s\n' "$PROG" "$*" >&2; }
die() { warn "$*"; exit 1; }

usage() {
	sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

# The probe table: TYPE|EVENT|FUNCTION|BTF FIELDS|$argN FIELDS. {struct.member} (or {a.b+c.d}) is an
# offset; a leading "?" marks an optional field.
probe_table() {
	cat <<'EOF'
p|dma_buf_export|dma_buf_export|exp_name=exp_info->exp_name:string size=exp_info->size flags=exp_info->flags:x32 ops=exp_info->ops priv=exp_info->priv|exp_name=+0(+{dma_buf_export_info.exp_name}($arg1)):string size=+{dma_buf_export_info.size}($arg1):u64 flags=+{dma_buf_export_info.flags}($arg1):x32 ops=+{dma_buf_export_info.ops}($arg1):x64 priv=+{dma_buf_export_info.priv}($arg1):x64
r|dma_buf_export_ret|dma_buf_export|ret=$retval:x64 size=$retval->size exp_name=$retval->exp_name:string ?file=$retval->file:x64 ?resv=$retval->resv:x64|ret=$retval:x64 size=+{dma_buf.size}($retval):u64 exp_name=+0(+{dma_buf.exp_name}($retval)):string ?file=+{dma_buf.file}($retval):x64 ?resv=+{dma_buf.resv}($retval):x64
p|dma_buf_fd|dma_buf_fd|dmabuf=dmabuf:x64 size=dmabuf->size exp_name=dmabuf->exp_name:string flags=flags:x32|dmabuf=$arg1:x64 size=+{dma_buf.size}($arg1):u64 exp_name=+0(+{dma_buf.exp_name}($arg1)):string flags=$arg2:x32
r|dma_buf_fd_ret|dma_buf_fd|ret=$retval:s32|ret=$retval:s32
p|dma_buf_get|dma_buf_get|fd=fd:s32|fd=$arg1:s32
r|dma_buf_get_ret|dma_buf_get|ret=$retval:x64|ret=$retval:x64
p|dma_buf_put|dma_buf_put|dmabuf=dmabuf:x64 exp_name=dmabuf->exp_name:string|dmabuf=$arg1:x64 exp_name=+0(+{dma_buf.exp_name}($arg1)):string
p|dma_buf_attach|dma_buf_attach|dmabuf=dmabuf:x64 dev=dev->kobj.name:string|dmabuf=$arg1:x64 dev=+0(+{device.kobj+kobject.name}($arg2)):string
r|dma_buf_attach_ret|dma_buf_attach|ret=$retval:x64|ret=$retval:x64
p|dma_buf_dynamic_attach|dma_buf_dynamic_attach|dmabuf=dmabuf:x64 dev=dev->kobj.name:string importer_ops=importer_ops:x64|dmabuf=$arg1:x64 dev=+0(+{device.kobj+kobject.name}($arg2)):string importer_ops=$arg3:x64
r|dma_buf_dynamic_attach_ret|dma_buf_dynamic_attach|ret=$retval:x64|ret=$retval:x64
p|dma_buf_detach|dma_buf_detach|dmabuf=dmabuf:x64 attach=attach:x64|dmabuf=$arg1:x64 attach=$arg2:x64
p|dma_buf_map_attachment|dma_buf_map_attachment|attach=attach:x64 direction=direction:s32|attach=$arg1:x64 direction=$arg2:s32
r|dma_buf_map_attachment_ret|dma_buf_map_attachment|ret=$retval:x64 nents=$retval->nents:u32 orig_nents=$retval->orig_nents:u32|ret=$retval:x64 nents=+{sg_table.nents}($retval):u32 orig_nents=+{sg_table.orig_nents}($retval):u32
p|dma_buf_map_attachment_unlocked|dma_buf_map_attachment_unlocked|attach=attach:x64 direction=direction:s32|attach=$arg1:x64 direction=$arg2:s32
r|dma_buf_map_attachment_unlocked_ret|dma_buf_map_attachment_unlocked|ret=$retval:x64|ret=$retval:x64
p|dma_buf_unmap_attachment|dma_buf_unmap_attachment|attach=attach:x64 sg_table=sg_table:x64 direction=direction:s32|attach=$arg1:x64 sg_table=$arg2:x64 direction=$arg3:s32
p|dma_buf_unmap_attachment_unlocked|dma_buf_unmap_attachment_unlocked|attach=attach:x64 sg_table=sg_table:x64 direction=direction:s32|attach=$arg1:x64 sg_table=$arg2:x64 direction=$arg3:s32
p|dma_buf_pin|dma_buf_pin|attach=attach:x64|attach=$arg1:x64
r|dma_buf_pin_ret|dma_buf_pin|ret=$retval:s32|ret=$retval:s32
p|dma_buf_unpin|dma_buf_unpin|attach=attach:x64|attach=$arg1:x64
p|dma_buf_move_notify|dma_buf_move_notify|dmabuf=dmabuf:x64|dmabuf=$arg1:x64
p|dma_buf_begin_cpu_access|dma_buf_begin_cpu_access|dmabuf=dmabuf:x64 direction=direction:s32|dmabuf=$arg1:x64 direction=$arg2:s32
r|dma_buf_begin_cpu_access_ret|dma_buf_begin_cpu_access|ret=$retval:s32|ret=$retval:s32
p|dma_buf_end_cpu_access|dma_buf_end_cpu_access|dmabuf=dmabuf:x64 direction=direction:s32|dmabuf=$arg1:x64 direction=$arg2:s32
r|dma_buf_end_cpu_access_ret|dma_buf_end_cpu_access|ret=$retval:s32|ret=$retval:s32
p|dma_buf_vmap|dma_buf_vmap|dmabuf=dmabuf:x64 map=map:x64 vmapping_counter=dmabuf->vmapping_counter:u32|dmabuf=$arg1:x64 map=$arg2:x64 vmapping_counter=+{dma_buf.vmapping_counter}($arg1):u32
r|dma_buf_vmap_ret|dma_buf_vmap|ret=$retval:s32 ?vaddr=+{iosys_map.vaddr}($arg2):x64|ret=$retval:s32 ?vaddr=+{iosys_map.vaddr}($arg2):x64
p|dma_buf_vmap_unlocked|dma_buf_vmap_unlocked|dmabuf=dmabuf:x64 map=map:x64|dmabuf=$arg1:x64 map=$arg2:x64
r|dma_buf_vmap_unlocked_ret|dma_buf_vmap_unlocked|ret=$retval:s32 ?vaddr=+{iosys_map.vaddr}($arg2):x64|ret=$retval:s32 ?vaddr=+{iosys_map.vaddr}($arg2):x64
p|dma_buf_vunmap|dma_buf_vunmap|dmabuf=dmabuf:x64 map=map:x64 vmapping_counter=dmabuf->vmapping_counter:u32 ?vaddr=+{iosys_map.vaddr}($arg2):x64|dmabuf=$arg1:x64 map=$arg2:x64 vmapping_counter=+{dma_buf.vmapping_counter}($arg1):u32 ?vaddr=+{iosys_map.vaddr}($arg2):x64
p|dma_buf_vunmap_unlocked|dma_buf_vunmap_unlocked|dmabuf=dmabuf:x64 map=map:x64 ?vaddr=+{iosys_map.vaddr}($arg2):x64|dmabuf=$arg1:x64 map=$arg2:x64 ?vaddr=+{iosys_map.vaddr}($arg2):x64
p|dma_buf_mmap|dma_buf_mmap|dmabuf=dmabuf:x64 vma=vma:x64 pgoff=pgoff:u64|dmabuf=$arg1:x64 vma=$arg2:x64 pgoff=$arg3:u64
r|dma_buf_mmap_ret|dma_buf_mmap|ret=$retval:s32|ret=$retval:s32
p|dma_buf_mmap_internal|dma_buf_mmap_internal|file=file:x64 vm_start=vma->vm_start:x64 vm_end=vma->vm_end:x64 vm_pgoff=vma->vm_pgoff:u64|file=$arg1:x64 vm_start=+{vm_area_struct.vm_start}($arg2):x64 vm_end=+{vm_area_struct.vm_end}($arg2):x64 vm_pgoff=+{vm_area_struct.vm_pgoff}($arg2):u64
r|dma_buf_mmap_internal_ret|dma_buf_mmap_internal|ret=$retval:s32|ret=$retval:s32
p|dma_buf_ioctl|dma_buf_ioctl|file=file:x64 cmd=cmd:x32 arg=arg:x64 ?flags=+u0($arg3):u64|file=$arg1:x64 cmd=$arg2:x32 arg=$arg3:x64 ?flags=+u0($arg3):u64
r|dma_buf_ioctl_ret|dma_buf_ioctl|ret=$retval:s64|ret=$retval:s64
p|dma_buf_llseek|dma_buf_llseek|file=file:x64 offset=offset:s64 whence=whence:s32|file=$arg1:x64 offset=$arg2:s64 whence=$arg3:s32
r|dma_buf_llseek_ret|dma_buf_llseek|ret=$retval:s64|ret=$retval:s64
p|dma_buf_poll|dma_buf_poll|file=file:x64|file=$arg1:x64
r|dma_buf_poll_ret|dma_buf_poll|ret=$retval:x32|ret=$retval:x32
p|dma_buf_file_release|dma_buf_file_release|inode=inode:x64 file=file:x64|inode=$arg1:x64 file=$arg2:x64
p|dma_buf_release|dma_buf_release|dentry=dentry:x64|dentry=$arg1:x64
p|udmabuf_create|udmabuf_create|head_flags=head->flags:x32 head_count=head->count:u32|head_flags=+0($arg2):x32 head_count=+4($arg2):u32
r|udmabuf_create_ret|udmabuf_create|ret=$retval:s64|ret=$retval:s64
p|system_heap_allocate|system_heap_allocate|len=len:u64 fd_flags=fd_flags:x32 heap_flags=heap_flags:x64|len=$arg2:u64 fd_flags=$arg3:x32 heap_flags=$arg4:x64
r|system_heap_allocate_ret|system_heap_allocate|ret=$retval:x64|ret=$retval:x64
EOF
}

# 64-bit layouts for --assume-offsets: identical in Linux 6.1, 6.12 and 6.18 (pahole on their BTF).
# Not here on purpose: members whose offset changed in that range (dma_buf.exp_name, .resv,
# .vmapping_counter; vm_area_struct.vm_pgoff).
assumed_offsets() {
	cat <<'EOF'
dma_buf_export_info.exp_name 0
dma_buf_export_info.ops 16
dma_buf_export_info.size 24
dma_buf_export_info.flags 32
dma_buf_export_info.resv 40
dma_buf_export_info.priv 48
dma_buf.size 0
dma_buf.file 8
device.kobj 0
kobject.name 0
sg_table.nents 8
sg_table.orig_nents 12
iosys_map.vaddr 0
vm_area_struct.vm_start 0
vm_area_struct.vm_end 8
EOF
}

# --- options -------------------------------------------------------------------------------------

MODE=
ARCH=
FUNCTION=0
SYSCALL_EVENTS=0
PID=
BUFFER_KB=
OUT=
VMLINUX=
OFFSETS_FILE=
ASSUME=0
VERBOSE=0

parse_options() {
	while [ $# -gt 0 ]; do
		case $1 in
		--btf) MODE=btf ;;
		--argn) MODE=argn ;;
		--regs) MODE=regs ;;
		--arch) [ $# -ge 2 ] || usage; ARCH=$2; shift ;;
		--function) FUNCTION=1 ;;
		--syscalls) SYSCALL_EVENTS=1 ;;
		--pid) [ $# -ge 2 ] || usage; PID=$2; shift ;;
		--buffer-kb) [ $# -ge 2 ] || usage; BUFFER_KB=$2; shift ;;
		-o|--output) [ $# -ge 2 ] || usage; OUT=$2; shift ;;
		--vmlinux) [ $# -ge 2 ] || usage; VMLINUX=$2; shift ;;
		--offsets) [ $# -ge 2 ] || usage; OFFSETS_FILE=$2; shift ;;
		--assume-offsets) ASSUME=1 ;;
		-v|--verbose) VERBOSE=1 ;;
		-h|--help) usage ;;
		*) warn "unknown option: $1"; usage ;;
		esac
		shift
	done
	case $ARCH in
	'') ARCH=$(uname -m) ;;
	esac
	case $ARCH in
	x86_64|amd64) ARCH=x86_64 ;;
	aarch64|arm64) ARCH=arm64 ;;
	*) [ "$MODE" != regs ] || die "--regs: no register table for architecture '$ARCH' (x86_64, arm64)" ;;
	esac
}

# --- tracefs -------------------------------------------------------------------------------------

T=
find_tracefs() {
	if [ -n "${TRACEFS:-}" ]; then
		T=$TRACEFS
	elif [ -e /sys/kernel/tracing/trace ]; then
		T=/sys/kernel/tracing
	elif [ -e /sys/kernel/debug/tracing/trace ]; then
		T=/sys/kernel/debug/tracing
	else
		mount -t tracefs nodev /sys/kernel/tracing 2>/dev/null || die "tracefs is not mounted and cannot be (are you root?)"
		T=/sys/kernel/tracing
	fi
	[ -w "$T/trace" ] || die "$T/trace is not writable (run as root)"
}

# Write one line to a tracefs file; non-zero when the kernel rejects it.
tracefs_write() {
	{ printf '%s\n' "$2" >>"$T/$1"; } 2>/dev/null
}

tracefs_set() {
	[ -e "$T/$1" ] || return 0
	{ printf '%s\n' "$2" >"$T/$1"; } 2>/dev/null || warn "could not write '$2' to $1"
}

mark() { # a trace_marker line (appended, so that a plain file standing in for tracefs keeps every one)
	[ -e "$T/trace_marker" ] || return 0
	{ printf '%s\n' "$1" >>"$T/trace_marker"; } 2>/dev/null || warn "could not write the marker '$1'"
}

last_error() {
	if [ "$VERBOSE" = 1 ] && [ -r "$T/error_log" ]; then
		tail -n 3 "$T/error_log" >&2 || :
	fi
}

# Which definitions the kernel takes: BTF names and fields, else $argN, else registers.
require_kprobes() {
	[ -e "$T/kprobe_events" ] || die "$T/kprobe_events is missing: the kernel lacks CONFIG_KPROBE_EVENTS"
}

detect_mode() {
	require_kprobes
	tracefs_write kprobe_events "-:$GROUP/dmaspec_probe_test" || :
	if tracefs_write kprobe_events "p:$GROUP/dmaspec_probe_test dma_buf_fd dmabuf=dmabuf:x64 size=dmabuf->size"; then
		MODE=btf
	elif tracefs_write kprobe_events "p:$GROUP/dmaspec_probe_test dma_buf_fd dmabuf=\$arg1:x64"; then
		MODE=argn
	else
		case $ARCH in
		x86_64) reg=%di ;;
		arm64) reg=%x0 ;;
		*) die "kprobe events are rejected and there is no register table for '$ARCH'" ;;
		esac
		tracefs_write kprobe_events "p:$GROUP/dmaspec_probe_test dma_buf_fd dmabuf=$reg:x64" ||
			die "the kernel rejects a kprobe on dma_buf_fd (no CONFIG_DMA_SHARED_BUFFER? see $T/error_log)"
		MODE=regs
	fi
	tracefs_write kprobe_events "-:$GROUP/dmaspec_probe_test" || :
	warn "probe definitions: $MODE ($ARCH)"
}

# --- offsets -------------------------------------------------------------------------------------

OFFDIR=
cleanup_tmp() { [ -z "$OFFDIR" ] || rm -rf "$OFFDIR"; }

# Resolve every {struct.member} the table uses into $OFFDIR/offsets ("struct.member offset" lines).
load_offsets() {
	OFFDIR=$(mktemp -d)
	trap cleanup_tmp EXIT
	: >"$OFFDIR/offsets"
	if [ -n "$OFFSETS_FILE" ]; then
		grep -v '^[[:space:]]*#' "$OFFSETS_FILE" >>"$OFFDIR/offsets" || :
	fi
	src=$VMLINUX
	[ -n "$src" ] || [ ! -r /sys/kernel/btf/vmlinux ] || src=/sys/kernel/btf/vmlinux
	if [ -n "$src" ] && command -v "$PAHOLE" >/dev/null 2>&1; then
		for s in $(table_members | cut -d. -f1 | sort -u); do
			# pahole prints "<type> <member>;  /* <offset> <size> */" per member, anonymous ones inlined.
			"$PAHOLE" -C "$s" "$src" 2>/dev/null | awk -v s="$s" '
				/\/\*[[:space:]]*[0-9]+[[:space:]:]/ && /;/ && !/\(\*/ {
					line = $0
					decl = line; sub(/;.*/, "", decl); sub(/\[.*/, "", decl); sub(/:[0-9]+[[:space:]]*$/, "", decl)
					n = split(decl, w, /[^A-Za-z0-9_]+/); m = w[n]; if (m == "" && n > 1) m = w[n - 1]
					c = line; sub(/.*\/\*[[:space:]]*/, "", c); split(c, o, /[^0-9]+/)
					if (m != "" && !(m in seen)) { seen[m] = 1; print s "." m " " o[1] }
				}' >>"$OFFDIR/offsets" || :
		done
	elif [ -z "$OFFSETS_FILE" ] && [ "$ASSUME" = 0 ] && [ "$MODE" != btf ]; then
		warn "no pahole (package dwarves) or no kernel BTF: fields at struct offsets are left out;"
		warn "install pahole, pass --offsets FILE or --vmlinux FILE, or --assume-offsets (64-bit, Linux 6.1-6.18)"
	fi
	if [ "$ASSUME" = 1 ]; then
		assumed_offsets >>"$OFFDIR/offsets"
	fi
}

# Every struct.member the table's {...} placeholders name, one per line.
table_members() {
	probe_table | awk '{ while (match($0, /[{][^}]*[}]/)) { print substr($0, RSTART + 1, RLENGTH - 2); $0 = substr($0, RSTART + RLENGTH) } }' |
		tr '+' '\n' | sort -u
}

offset_of() { # struct.member -> offset, the first source that knows it wins
	awk -v k="$1" '$1 == k { print $2; exit }' "$OFFDIR/offsets"
}

# Replace {a.b+c.d} by the sum of the offsets; print nothing if one is unknown.
resolve_field() {
	field=$1
	while :; do
		case $field in
		*'{'*'}'*) ;;
		*) break ;;
		esac
		expr=${field#*\{}
		expr=${expr%%\}*}
		sum=0
		rest=$expr
		while [ -n "$rest" ]; do
			part=${rest%%+*}
			case $rest in *+*) rest=${rest#*+} ;; *) rest= ;; esac
			off=$(offset_of "$part")
			[ -n "$off" ] || return 0
			sum=$((sum + off))
		done
		field=$(printf '%s' "$field" | sed "s/{$expr}/$sum/")
	done
	printf '%s' "$field"
}

# shellcheck disable=SC2016 # literal $argN in the sed expressions
regs_for() {
	case $ARCH in
	x86_64) printf '%s' "$1" | sed -e 's/\$arg1/%di/g' -e 's/\$arg2/%si/g' -e 's/\$arg3/%dx/g' \
		-e 's/\$arg4/%cx/g' -e 's/\$arg5/%r8/g' -e 's/\$arg6/%r9/g' ;;
	arm64) printf '%s' "$1" | sed -e 's/\$arg1/%x0/g' -e 's/\$arg2/%x1/g' -e 's/\$arg3/%x2/g' \
		-e 's/\$arg4/%x3/g' -e 's/\$arg5/%x4/g' -e 's/\$arg6/%x5/g' ;;
	esac
}

# build_fields KIND MODE OPTIONAL(1|0) FIELD...: the fields for a mode, with or without the "?" ones.
build_fields() {
	bkind=$1
	bmode=$2
	bopt=$3
	shift 3
	out=
	for f in "$@"; do
		case $f in
		'?'*) [ "$bopt" = 1 ] || continue; f=${f#?} ;;
		esac
		case $f in
		*'{'*) f=$(resolve_field "$f") ;;
		esac
		[ -n "$f" ] || continue
		if [ "$bmode" = regs ]; then
			# At a return probe the argument registers are clobbered.
			case $bkind$f in r*\$arg*) continue ;; esac
			f=$(regs_for "$f")
		fi
		out="$out $f"
	done
	printf '%s' "$out"
}

# The definitions to try for one table line, best first, one per output line.
candidates() {
	kind=$1 event=$2 func=$3 btf=$4 argn=$5
	# shellcheck disable=SC2086 # the field lists are space-separated on purpose
	case $MODE in
	btf)
		printf '%s:%s/%s %s%s\n' "$kind" "$GROUP" "$event" "$func" "$(build_fields "$kind" btf 1 $btf)"
		printf '%s:%s/%s %s%s\n' "$kind" "$GROUP" "$event" "$func" "$(build_fields "$kind" btf 0 $btf)"
		printf '%s:%s/%s %s%s\n' "$kind" "$GROUP" "$event" "$func" "$(build_fields "$kind" argn 1 $argn)"
		printf '%s:%s/%s %s%s\n' "$kind" "$GROUP" "$event" "$func" "$(build_fields "$kind" argn 0 $argn)" ;;
	argn|regs)
		printf '%s:%s/%s %s%s\n' "$kind" "$GROUP" "$event" "$func" "$(build_fields "$kind" "$MODE" 1 $argn)"
		printf '%s:%s/%s %s%s\n' "$kind" "$GROUP" "$event" "$func" "$(build_fields "$kind" "$MODE" 0 $argn)" ;;
	esac
}

# --- subcommands ---------------------------------------------------------------------------------

print_kprobes() {
	[ -n "$MODE" ] || { find_tracefs; detect_mode; }
	load_offsets
	probe_table | while IFS='|' read -r kind event func btf argn; do
		candidates "$kind" "$event" "$func" "$btf" "$argn" | head -n 1
	done
	report_missing
}

report_missing() {
	# resolve_field runs in subshells: recompute the unknown offsets here.
	unknown=
	for k in $(table_members); do
		[ -n "$(offset_of "$k")" ] || unknown="$unknown $k"
	done
	if [ -n "$unknown" ] && [ "$MODE" != btf ]; then
		warn "offsets unknown, fields left out:$unknown"
	fi
}

define_probes() {
	load_offsets
	defined=0
	skipped=
	probe_table >"$OFFDIR/table"
	while IFS='|' read -r kind event func btf argn; do
		ok=0
		candidates "$kind" "$event" "$func" "$btf" "$argn" >"$OFFDIR/cand"
		while IFS= read -r def; do
			if tracefs_write kprobe_events "$def"; then
				ok=1
				[ "$VERBOSE" = 0 ] || warn "defined: $def"
				break
			fi
			last_error
		done <"$OFFDIR/cand"
		if [ "$ok" = 1 ]; then
			defined=$((defined + 1))
		else
			skipped="$skipped $event"
		fi
	done <"$OFFDIR/table"
	report_missing
	[ -z "$skipped" ] || warn "not defined (function missing, inlined or not probeable here):$skipped"
	[ "$defined" -gt 0 ] || die "no probe could be defined"
	warn "$defined probe events in $GROUP/"
}

FILTER_GLOBS="dma_buf_* dma_resv_* dma_fence_* *udmabuf* get_sg_table put_sg_table dma_heap_* system_heap_*
sync_file_* vgem_* drm_gem_prime_* drm_prime_* drm_gem_map_* drm_gem_unmap_* drm_gem_dmabuf_*
drm_gem_shmem_prime_* vb2_vmalloc_*"

set_events() { # 0|1; with --syscalls, sets ENABLED_SYSCALLS and ENABLED_SCHED to what it enabled
	v=$1
	ENABLED_SYSCALLS=
	ENABLED_SCHED=
	for d in "$GROUP" dma_fence dma_buf; do
		[ ! -e "$T/events/$d/enable" ] || tracefs_set "events/$d/enable" "$v"
	done
	if [ "$v" = 0 ] || [ "$SYSCALL_EVENTS" = 1 ]; then
		for s in $SYSCALLS; do
			both=1
			for e in "sys_enter_$s" "sys_exit_$s"; do
				if [ -e "$T/events/syscalls/$e/enable" ]; then
					tracefs_set "events/syscalls/$e/enable" "$v"
				else
					both=0
				fi
			done
			[ "$both" = 0 ] || ENABLED_SYSCALLS="${ENABLED_SYSCALLS:+$ENABLED_SYSCALLS,}$s"
		done
		for e in sched_process_fork sched_process_exit; do
			if [ -e "$T/events/sched/$e/enable" ]; then
				tracefs_set "events/sched/$e/enable" "$v"
				ENABLED_SCHED="${ENABLED_SCHED:+$ENABLED_SCHED,}$e"
			fi
		done
	fi
}

remove_probes() {
	[ -e "$T/kprobe_events" ] || return 0
	set_events 0
	grep "^[pr][0-9]*:$GROUP/" "$T/kprobe_events" 2>/dev/null | while read -r def _; do
		tracefs_write kprobe_events "-:${def#*:}" || warn "could not remove ${def#*:}"
	done
}

cmd_start() {
	find_tracefs
	require_kprobes
	[ -n "$MODE" ] || detect_mode
	remove_probes
	define_probes
	tracefs_set tracing_on 0
	tracefs_set current_tracer nop
	: >"$T/trace"
	[ -z "$BUFFER_KB" ] || tracefs_set buffer_size_kb "$BUFFER_KB"
	tracefs_set options/record-tgid 1
	if [ -n "$PID" ]; then
		tracefs_set set_event_pid "$PID"
		tracefs_set options/event-fork 1
	fi
	# The tracer before the marker: switching tracers empties the buffer.
	if [ "$FUNCTION" = 1 ]; then
		: >"$T/set_ftrace_filter"
		for g in $FILTER_GLOBS; do
			tracefs_write set_ftrace_filter "$g" || warn "function filter: nothing matches $g, skipped"
		done
		if [ -n "$PID" ]; then
			tracefs_set set_ftrace_pid "$PID"
			tracefs_set options/function-fork 1
		fi
		tracefs_set current_tracer function
		: >"$T/trace"
	fi
	# The marker first, before any event is enabled: the reader takes the kernel version from it.
	tracefs_set tracing_on 1
	mark "dmaspec: kernel=$(uname -r)"
	set_events 1
	# What the trace has, for the reader, which sees only the first lines of a long trace: the probes, and
	# the system calls whose both events are on here (the rules they decide are no longer narrowed; one
	# missing, as dup2 on arm64, is not guessed).
	# sync_flags: whether the dma_buf_ioctl probe reads the SYNC flags from user memory (the "+u" fetch).
	sync_flags=0
	! grep -q "dma_buf_ioctl .*flags=" "$T/kprobe_events" 2>/dev/null || sync_flags=1
	mark "dmaspec: kprobes=$defined syscalls=$ENABLED_SYSCALLS sched=$ENABLED_SCHED sync_flags=$sync_flags"
	if [ "$SYSCALL_EVENTS" = 1 ] && [ -z "$ENABLED_SYSCALLS" ]; then
		warn "--syscalls: no syscall tracepoint found (CONFIG_FTRACE_SYSCALLS?)"
	fi
	warn "recording; run the program, then: $PROG stop -o trace.txt"
}

cmd_stop() {
	find_tracefs
	tracefs_set tracing_on 0
	[ -n "$OUT" ] || OUT=dmaspec-ftrace-$(date +%Y%m%d-%H%M%S).txt
	cat "$T/trace" >"$OUT"
	grep "^[pr][0-9]*:$GROUP/" "$T/kprobe_events" >"$OUT.kprobes" 2>/dev/null || :
	SYSCALL_EVENTS=1
	set_events 0
	tracefs_set current_tracer nop
	[ ! -e "$T/set_ftrace_filter" ] || : >"$T/set_ftrace_filter"
	lost=$(awk '{ while (match($0, /LOST [0-9]+ EVENTS/)) { split(substr($0, RSTART, RLENGTH), w, " "); n += w[2]; $0 = substr($0, RSTART + RLENGTH) } } END { print n + 0 }' "$OUT")
	lines=$(grep -vc '^#' "$OUT" || :)
	warn "wrote $OUT ($lines lines) and $OUT.kprobes (the probe definitions)"
	if [ "$lost" -gt 0 ]; then
		warn "WARNING: the trace lost $lost events ([LOST N EVENTS] markers): record again with a larger --buffer-kb, or without --function"
	fi
}

cmd_clean() {
	find_tracefs
	tracefs_set tracing_on 0
	SYSCALL_EVENTS=1
	remove_probes
	tracefs_set current_tracer nop
	[ ! -e "$T/set_ftrace_filter" ] || : >"$T/set_ftrace_filter"
	[ ! -e "$T/set_event_pid" ] || : >"$T/set_event_pid"
	[ ! -e "$T/set_ftrace_pid" ] || : >"$T/set_ftrace_pid"
	: >"$T/trace"
	tracefs_set tracing_on 1
}

[ $# -ge 1 ] || usage
cmd=$1
shift
parse_options "$@"
case $cmd in
start) cmd_start ;;
stop) cmd_stop ;;
clean) cmd_clean ;;
print-kprobes) print_kprobes ;;
*) usage ;;
esac
