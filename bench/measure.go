package bench

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// measurement is what one child process cost.
type measurement struct {
	wall, user, sys time.Duration
	maxRSS          int64 // bytes; 0 where the platform does not tell
}

// measure runs cmd to completion and measures its wall time, CPU time and
// peak RSS (its own, and its waited-for children's: the child is waited
// for alone), under GNU time where timeTool finds it; rssFile receives GNU
// time's report.
func measure(cmd *exec.Cmd, rssFile string) (measurement, error) {
	return measureWith(cmd, rssFile, timeTool())
}

// measureWith is measure under the GNU time at timePath, or without it
// when timePath is "".
func measureWith(cmd *exec.Cmd, rssFile, timePath string) (measurement, error) {
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if timePath != "" {
		underTime(cmd, timePath, rssFile)
	}
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:] // the one line naming the cause
		}
		if msg == "" { // axel -q prints some causes to stdout, dropped
			return measurement{}, err
		}
		return measurement{}, fmt.Errorf("%w: %s", err, msg)
	}
	m := measurement{wall: wall, user: cmd.ProcessState.UserTime(), sys: cmd.ProcessState.SystemTime()}
	if timePath == "" {
		m.maxRSS = childRSS(cmd.ProcessState)
		return m, nil
	}
	kib, err := readRSS(rssFile)
	if err != nil {
		return measurement{}, err
	}
	m.maxRSS = kib << 10
	return m, nil
}

// readRSS reads the KiB that GNU time -f %M wrote.
func readRSS(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("peak rss: %w", err)
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("peak rss from GNU time: %w", err)
	}
	return kib, nil
}
