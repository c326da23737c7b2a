package cmd

import (
	"strings"

	dlbench "github.com/dlflow/dlflow/bench"
)

// scenarioNames lists the built-in origin's scenarios for help and errors.
var scenarioNames = func() string {
	var names []string
	for _, s := range dlbench.Scenarios {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}()

// benchUsageHead and benchUsageTail frame the flags in the usage.
const benchUsageHead = `Usage: dlflow bench [flags]

Serves a generated file from a built-in origin on 127.0.0.1 (or nginx, or
takes --url) and downloads it with every cell of a matrix: topology x
connections x piece size, each --runs times, each run a child process.
Checks every output's sha256 and prints, per cell, the median and min-max
throughput, median time, peak RSS, CPU time, the memory bound (as validate
computes it), and the stage that limits the run (from per-stage queue
fills). Needs no network unless --url is given.

Scenarios: plain; ratelimit (--rate per response); cap (--rate per
request, as nginx's limit_rate: the same origin as ratelimit, issue #20's
name; --compare=oracle adds N curls started at once on the N ranges of a
size known in advance, each written at its offset); latency (--latency
per response); slowconn (one GET, --slow-request, trickles at --trickle);
wan (every TCP connection capped at --conn-rate over all its responses,
and --latency, 100ms, per response); small (--files files of --file-size,
--latency, 50ms, per response, downloaded as one batch, --jobs at once:
dlflow -i LIST; the table adds the requests per file and the connections
the origin accepted); mirrors (A as in wan with 50ms per response, a
mirror B capped at --mirror-rate per TCP connection, and DEAD where
nothing listens: each dlflow cell runs alone, "+mirror" B and "+dead";
--compare adds aria2c -x8 -s16 A B); s3 (an upload while downloading:
the origin as in plain, and each run's output an object of a SeaweedFS the
bench starts on loopback, weed on PATH or where .ci/install-weed puts it,
its sha256 read back; dlflow runs URL -o s3://BUCKET/KEY, --compare adds
curl URL | s5cmd pipe s3://BUCKET/KEY, s5cmd on PATH); s3cap (s3 with
every TCP connection of the origin capped at --conn-rate); extract (a
real tree, --tree, by
default this machine's GOROOT, tarred once and served as .tar.gz and
.tar.zst; each dlflow cell runs dlflow URL --extract DIR once per format,
dlflow picking the topology unless -c is given; --compare (or
--compare=pipe) adds the shell pipes curl | tar xz, curl | tar --zstd -x
and curl | zstd -d | tar x, each in a new DIR and then sync, timed as a
whole; every extracted tree is checked against the source: paths, types,
permissions, sizes and sha256; the table adds each dlflow cell's speed
against each pipe of its format, the pipe's time over the cell's).

Examples:
  dlflow bench
  dlflow bench --scenario mirrors -c examples/ranged.yaml --compare --runs 3
  dlflow bench --size 1GiB --runs 5 -c examples/ranged.yaml -c examples/stream.yaml
  dlflow bench -c examples/ranged.yaml --connections 4,8,16 --piece 1MiB,4MiB
  dlflow bench -c examples/stream.yaml --vary stages.write.config.fsync=true,false
  dlflow bench --scenario ratelimit,slowconn --compare --plot bench.svg
  dlflow bench --scenario wan,small --compare
  dlflow bench --origin nginx --scenario ratelimit --compare
  dlflow bench --scenario cap --size 1GiB -c examples/ranged.yaml --connections 8 --compare=oracle,axel
  dlflow bench --scenario cap -c examples/ranged.yaml --runs 1 --timeline cap.svg
  dlflow bench --scenario s3,s3cap --conn-rate 25MiB --size 1GiB --compare --runs 3
  dlflow bench --scenario extract --compare --runs 3
  dlflow bench --scenario extract --tree generated --tree-files 50000 --compare=pipe
  dlflow bench --url https://example.com/big.iso --sha256 HEX --runs 1

Flags:
`

const benchUsageTail = ""
