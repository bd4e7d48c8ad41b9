package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTicks = 100

// Usage is a process's CPU time and resident memory at one moment.
type Usage struct {
	At  time.Time
	CPU time.Duration // user + system time since the process started
	RSS int64         // resident set size, bytes
}

// ReadUsage reads the CPU time and RSS of process pid from /proc.
func ReadUsage(pid int) (Usage, error) {
	u := Usage{At: time.Now()}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return u, errors.New("bench: bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return u, errors.New("bench: short /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return u, err
	}
	u.CPU = time.Duration(ut+st) * time.Second / clockTicks
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return u, err
			}
			u.RSS = kb << 10
			return u, nil
		}
	}
	return u, errors.New("bench: no VmRSS in /proc status")
}

// serverUsage returns the server's CPU over the window u0..u1, its RSS at
// the end and its RSS growth since before per client; nothing when the
// target does not report its usage.
func serverUsage(have bool, before, u0, u1 Usage, clients int) (cpu *float64, rssAfter int64, perClient *float64) {
	if !have || u1.RSS <= 0 {
		return nil, 0, nil
	}
	c := CPUPercent(u0, u1)
	per := round3(float64(u1.RSS-before.RSS) / float64(clients))
	return &c, u1.RSS, &per
}

// CPUPercent is the CPU used between two readings in percent of one core.
func CPUPercent(a, b Usage) float64 {
	wall := b.At.Sub(a.At)
	if wall <= 0 {
		return 0
	}
	return round3(100 * float64(b.CPU-a.CPU) / float64(wall))
}

// Target is the server a benchmark loads: a child process it started, or a
// server given by URL (whose process is known only when its pid is given).
type Target struct {
	URL string // http://host:port
	PID int    // 0 when the process is unknown: no CPU or RSS figures

	cmd     *exec.Cmd
	done    chan error
	dataDir string // a directory of recordings made for the child, removed by Close
}

// Remote returns a Target for a running server; pid may be 0.
func Remote(url string, pid int) *Target {
	return &Target{URL: strings.TrimSuffix(url, "/"), PID: pid}
}

// ServerOptions say how to start a child server.
type ServerOptions struct {
	Exe  string   // path of the tickwire executable
	Hz   int      // -hz; 0 leaves the server's default
	Args []string // more flags for `tickwire serve`
	// CPU, when >= 0, pins the server to that CPU with taskset.
	CPU int
	// Stderr receives the server's log (discarded when nil).
	Stderr io.Writer
}

// StartServer starts `tickwire serve -addr 127.0.0.1:0` as a child process
// and waits for its `listening on` line. Unless o.Args set -data-dir, the
// child records its rooms (when it records) into a temporary directory,
// removed by Close.
func StartServer(ctx context.Context, o ServerOptions) (*Target, error) {
	args := []string{"serve", "-addr", "127.0.0.1:0", "-log-level", "warn"}
	if o.Hz > 0 {
		args = append(args, "-hz", strconv.Itoa(o.Hz))
	}
	var dataDir string
	if !hasFlag(o.Args, "data-dir") {
		var err error
		if dataDir, err = os.MkdirTemp("", "tickwire-data-"); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		args = append(args, "-data-dir", dataDir)
	}
	args = append(args, o.Args...)
	name := o.Exe
	if o.CPU >= 0 {
		ts, err := exec.LookPath("taskset")
		if err != nil {
			return nil, fmt.Errorf("bench: pinning needs taskset (util-linux): %w", err)
		}
		name, args = ts, append([]string{"-c", strconv.Itoa(o.CPU), o.Exe}, args...)
	}
	cmd := exec.Command(name, args...)
	// The server gets the environment minus TICKWIRE_* settings meant for
	// other runs, so that only the flags above configure it.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "TICKWIRE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stderr = o.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		if dataDir != "" {
			_ = os.RemoveAll(dataDir)
		}
		return nil, err
	}
	t := &Target{PID: cmd.Process.Pid, cmd: cmd, done: make(chan error, 1), dataDir: dataDir}
	lines := make(chan string, 1)
	go func() {
		r := bufio.NewReader(out)
		line, _ := r.ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, r)
		t.done <- cmd.Wait()
	}()
	select {
	case line := <-lines:
		addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
		if !ok {
			t.Close()
			return nil, fmt.Errorf("bench: server said %q, want `listening on URL`", line)
		}
		t.URL = addr
		return t, nil
	case <-ctx.Done():
		t.Close()
		return nil, ctx.Err()
	case <-time.After(15 * time.Second):
		t.Close()
		return nil, errors.New("bench: server did not start within 15s")
	}
}

// Usage reads the server process's CPU and RSS; ok is false when the
// process is unknown.
func (t *Target) Usage() (u Usage, ok bool) {
	if t.PID <= 0 {
		return Usage{}, false
	}
	u, err := ReadUsage(t.PID)
	return u, err == nil
}

// Close stops a child server (SIGTERM, then SIGKILL after 10 s) and waits
// for it; it does nothing for a remote server.
func (t *Target) Close() error {
	if t.cmd == nil {
		return nil
	}
	_ = t.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-t.done:
	case <-time.After(10 * time.Second):
		_ = t.cmd.Process.Kill()
		err = <-t.done
	}
	t.cmd = nil
	if t.dataDir != "" {
		_ = os.RemoveAll(t.dataDir)
	}
	return err
}

// hasFlag reports whether args set the flag name (-name, --name, with or
// without =value).
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// WSURL returns the WebSocket URL of path on the target.
func (t *Target) WSURL(path string) string {
	if rest, ok := strings.CutPrefix(t.URL, "https://"); ok {
		return "wss://" + rest + path
	}
	return "ws://" + strings.TrimPrefix(t.URL, "http://") + path
}
