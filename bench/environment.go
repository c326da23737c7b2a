package bench

import (
	"bufio"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Environment is where and when a bench ran, so that a result can be told
// apart from another and run again. A field the platform does not tell is
// its zero value. Its JSON names are part of the results document's
// contract.
type Environment struct {
	Version    string    `json:"dlflow_version"` // the module version, "(devel)" for a checkout
	Commit     string    `json:"dlflow_commit,omitempty"`
	Modified   bool      `json:"dlflow_modified,omitempty"` // built from a tree with uncommitted changes
	GoVersion  string    `json:"go_version"`
	OS         string    `json:"os"`
	Arch       string    `json:"arch"`
	Kernel     string    `json:"kernel,omitempty"`
	CPU        string    `json:"cpu,omitempty"`
	Cores      int       `json:"cores"`
	Memory     int64     `json:"memory_bytes,omitempty"`
	Filesystem string    `json:"filesystem,omitempty"` // of the directory the outputs are written to
	LoadBefore float64   `json:"load_before"`          // 1-minute load average; -1 where unknown
	LoadAfter  float64   `json:"load_after"`
	Start      time.Time `json:"start"`
	Seconds    float64   `json:"seconds"` // the whole bench's wall time
}

// Version is this binary's dlflow version and commit, as `dlflow bench
// --version` prints them.
func Version() (version, commit string, modified bool) {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown", "", false
	}
	version = info.Main.Version
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	return version, commit, modified
}

// captureEnvironment reads the machine's description; dir is where the
// outputs go.
func captureEnvironment(dir string) Environment {
	e := Environment{
		GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Cores: runtime.NumCPU(),
		Kernel: strings.TrimSpace(readSmall("/proc/sys/kernel/osrelease")),
		CPU:    procField("/proc/cpuinfo", "model name"), Filesystem: filesystemOf(dir),
		LoadBefore: loadAverage(), Start: time.Now().UTC(),
	}
	e.Version, e.Commit, e.Modified = Version()
	if kib, err := strconv.ParseInt(strings.Fields(procField("/proc/meminfo", "MemTotal") + " 0")[0], 10, 64); err == nil {
		e.Memory = kib << 10
	}
	return e
}

// loadAverage is the 1-minute load average, or -1 where the platform does
// not tell.
func loadAverage() float64 {
	f := strings.Fields(readSmall("/proc/loadavg"))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// busy reports whether load is above the machine's cores: the runs then
// compete for the CPU with something else.
func busy(load float64) bool { return load > float64(runtime.NumCPU()) }

// procField is the value of the first "key: value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// filesystemOf is the type of the filesystem that holds dir, from the
// mount table (the longest mount point that is a prefix of dir).
func filesystemOf(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	best, fstype := "", ""
	for _, line := range strings.Split(readSmall("/proc/self/mountinfo"), "\n") {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(line, " - ")
		fields, tail := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 5 || len(tail) < 1 {
			continue
		}
		mnt := unescapeMount(fields[4])
		inside := abs == mnt || strings.HasPrefix(abs, strings.TrimSuffix(mnt, "/")+"/")
		if inside && len(mnt) >= len(best) {
			best, fstype = mnt, tail[0]
		}
	}
	return fstype
}

// unescapeMount undoes the octal escapes (\040 for a space) of
// /proc/self/mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// readSmall reads a small file, "" when it cannot.
func readSmall(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(data)
}
