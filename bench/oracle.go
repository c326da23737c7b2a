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
// equal ranges of size bytes (the last takes the remainder), each writing
// OUT.part<i>, waits for every one (a failed curl fails the run), then
// concatenates the parts into OUT and removes them: one shell command,
// timed as a whole.
func oracleCell(origin Origin, scenario Scenario, curl string, n int, size int64) *cell {
	n = int(max(min(int64(n), size), 1))
	var script strings.Builder
	script.WriteString("set -e\n")
	share := size / int64(n)
	for i := range n {
		first, last := int64(i)*share, int64(i+1)*share-1
		if i == n-1 {
			last = size - 1
		}
		fmt.Fprintf(&script, "\"$3\" -sf -r %d-%d -o \"$2.part%d\" \"$1\" & p%d=$!\n", first, last, i, i)
	}
	var parts []string
	for i := range n {
		fmt.Fprintf(&script, "wait $p%d\n", i)
		parts = append(parts, fmt.Sprintf("\"$2.part%d\"", i))
	}
	fmt.Fprintf(&script, "cat %s > \"$2\"\nrm -f %s\n", strings.Join(parts, " "), strings.Join(parts, " "))
	x := fmt.Sprint(n)
	return &cell{
		Cell: Cell{Scenario: scenario, Origin: origin, Tool: "oracle", Connections: n, Label: "oracle c=" + x},
		command: func(ctx context.Context, j job) (*exec.Cmd, error) {
			return exec.CommandContext(ctx, "sh", "-c", script.String(), "oracle", j.url, j.out, curl), nil
		},
	}
}
