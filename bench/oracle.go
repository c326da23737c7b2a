package bench

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// oracleScenarios are the scenarios where the oracle is a reference row:
// those of one file from the built-in origin, whose size the bench knows
// before the run, served with ranges.
var oracleScenarios = []Scenario{ScenarioPlain, ScenarioRateLimit, ScenarioCap, ScenarioLatency, ScenarioWAN}

// oracleCells are the oracle with each number of connections: what a
// downloader that knew the size in advance and never re-planned would
// take. It needs curl, and a scenario of oracleScenarios.
func oracleCells(o Options, scenario Scenario) []*cell {
	curl, err := exec.LookPath("curl")
	if err != nil || !slices.Contains(oracleScenarios, scenario) || o.Origin == OriginExternal {
		return nil
	}
	var cells []*cell
	for _, n := range referenceConnections(o.Connections, 1024) {
		cells = append(cells, oracleCell(o.Origin, scenario, curl, n, int64(o.Size)))
	}
	return cells
}

// oracleCell starts n curl processes at once, the i-th on the i-th of n
// equal ranges of size bytes (the last takes the remainder), each piped
// into a dd that writes it at its offset of OUT, and waits for every one
// (a failed curl or dd fails the run): one bash command, timed as a whole.
//
// The parts go to their offsets as they come, as a downloader's would: an
// oracle that wrote part files and concatenated them after the last one
// came paid a second pass over the whole file (about 0.8 s of 6 s for 1
// GiB here) that no downloader pays, and so was slower than axel.
func oracleCell(origin Origin, scenario Scenario, curl string, n int, size int64) *cell {
	n = int(max(min(int64(n), size), 1))
	var script strings.Builder
	// pipefail, and each pipeline in a subshell: waiting for a pipeline
	// started with & waits for its last command only, so a failed curl
	// would go unseen behind a dd that wrote what it got.
	script.WriteString("set -e -o pipefail\n: > \"$2\"\n")
	share := size / int64(n)
	for i := range n {
		first, last := int64(i)*share, int64(i+1)*share-1
		if i == n-1 {
			last = size - 1
		}
		fmt.Fprintf(&script, "(\"$3\" -sf -r %d-%d \"$1\" | dd of=\"$2\" bs=1M seek=%d oflag=seek_bytes conv=notrunc status=none) & p%d=$!\n", first, last, first, i)
	}
	for i := range n {
		fmt.Fprintf(&script, "wait $p%d\n", i)
	}
	x := fmt.Sprint(n)
	return &cell{
		Cell: Cell{Scenario: scenario, Origin: origin, Tool: "oracle", Connections: n, Label: "oracle c=" + x},
		command: func(ctx context.Context, j job) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, "bash", "-c", script.String(), "oracle", j.url, j.out, curl), nil
		},
	}
}
