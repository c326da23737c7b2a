package dlflow_test

// The generator of TestHostileRandom: from a seed, one download (size,
// topology, output, sources, piece hashes) and the faults its origins
// inject. The assertions are in hostile_random_test.go.

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/dlflow/dlflow/bench/origin"
)

// hostileClasses are the fault classes a case may draw, by name
// (DLFLOW_HOSTILE_FAULTS=name,name enables only those). Every class is a
// fault a client can detect; docs/FAULTS.md lists those it cannot.
var hostileClasses = []string{
	"switch",             // the file changes (new validators); the server honours If-Range
	"switch-no-if-range", // the same, and the server answers 206 of the new file to an old If-Range
	"cut",                // bodies end before their Content-Length (primary or mirror)
	"wrong-range",        // 206 with another range in Content-Range
	"lying-total",        // 206 whose Content-Range declares another total
	"liar",               // the mirror serves other bytes under the same validators (with piece hashes)
	"silent",             // a GET of the primary after the probe gets no answer
	"silent-mirror",      // a GET of the mirror gets no answer
	"stall",              // a body stops and the connection stays open (primary or mirror)
	"reset",              // connections reset before the answer or right after the header
	"metalink-size",      // the Metalink declares another size than the servers'
	"mirror-auth",        // the request's Authorization header with mirrors or a Metalink
	"pieces-only",        // a Metalink may have piece hashes and no hash of the file (not drawn: on or off)
}

// waitingClasses cost a download a timeout each.
var waitingClasses = []string{"silent", "silent-mirror", "stall"}

// pendingFaults are the classes whose bugs are not fixed yet: they are off
// unless DLFLOW_HOSTILE_FAULTS names them. Every class the issue listed
// (switch-no-if-range, liar, mirror-auth, metalink-size, pieces-only) is
// fixed and on.
var pendingFaults = []string{}

// hostileHeaderTimeout and hostileIdleTimeout are the header and idle
// timeouts of every case: what a silent answer or a stalled body costs.
// Shorter ones fire on a loaded machine where nothing is wrong (3 s did,
// on 2 cores at a load average of 36, in 22 of 489 cases). (A body
// that trickles, 1 B/s, but never stops is no fault a client can tell
// from a slow link: there is no class for it.)
const hostileHeaderTimeout, hostileIdleTimeout = "10s", "10s"

// hostileCase is one drawn download.
type hostileCase struct {
	seed     uint64
	size     int64
	tar      bool   // the content is a tar archive (of size bytes)
	output   string // "file", "writer" or "extract"
	topology string // "" is the automatic choice
	mirror   bool   // a second origin serves the file too
	pieces   int64  // Metalink piece length; 0: no Metalink
	whole    bool   // the Metalink has the file's hash besides its pieces'
	metaHTTP bool   // the Metalink is fetched from a third origin
	liar     string // for "liar": "primary" or "mirror" serves other bytes
	metaSize int64  // the size the Metalink declares
	classes  []string
	primary  origin.Faults
	second   origin.Faults
	auth     bool // the request sets an Authorization header
	userinfo bool // with auth: as user:password in the URL, not a header
}

// liarSeed is the content a lying mirror serves: no version of the
// primary's.
const liarSeed = 1000

// hostileVersions is how many versions of a changing file may be served.
const hostileVersions = 64

func (c *hostileCase) has(class string) bool { return slices.Contains(c.classes, class) }

func (c *hostileCase) String() string {
	return fmt.Sprintf("size %d tar %v output %s topology %q mirror %v pieces %d (metalink size %d, file hash %v, over http %v) auth %v (userinfo %v) faults %v (liar %q) primary %+v mirror %+v",
		c.size, c.tar, c.output, c.topology, c.mirror, c.pieces, c.metaSize, c.whole, c.metaHTTP, c.auth, c.userinfo, c.classes, c.liar, nonZero(c.primary), nonZero(c.second))
}

// nonZero shows only the faults set.
func nonZero(f origin.Faults) string {
	s := fmt.Sprintf("%+v", f)
	var kept []string
	for _, kv := range strings.Fields(strings.Trim(s, "{}")) {
		if k, v, _ := strings.Cut(kv, ":"); v != "0" && v != "false" && v != "" && k != "" {
			kept = append(kept, kv)
		}
	}
	return "{" + strings.Join(kept, " ") + "}"
}

// drawSize picks 0, a few bytes, a size around a multiple of the 256 KiB
// piece, a few MB, or (rarely, and only in the long run) up to 40 MB.
func drawSize(r *rand.Rand, long bool) int64 {
	const piece = 256 << 10
	switch k := r.IntN(20); {
	case k == 0:
		return 0
	case k < 4:
		return 1 + r.Int64N(4096)
	case k < 12:
		return int64(1+r.IntN(12))*piece + r.Int64N(3) - 1
	case k < 19 || !long:
		return 1<<20 + r.Int64N(5<<20)
	}
	return 16<<20 + r.Int64N(24<<20)
}

// genCase draws the case of seed. The draws do not depend on which
// classes are enabled, so a seed names the same download whatever the
// list: classes not enabled are only left out.
func genCase(seed uint64, enabled map[string]bool, long bool) *hostileCase {
	r := rand.New(rand.NewPCG(seed, 0x686f7374696c65))
	c := &hostileCase{seed: seed, size: drawSize(r, long)}
	c.tar = c.size > 0 && r.IntN(4) == 0
	if c.tar {
		c.size = tarSize(c.size)
	}
	c.mirror = r.IntN(2) == 0
	if r.IntN(3) == 0 && c.size > 0 {
		c.pieces = []int64{64 << 10, 256 << 10, 1 << 20}[r.IntN(3)]
		c.whole, c.metaHTTP = r.IntN(2) == 0, r.IntN(2) == 0
	}
	c.metaSize = c.size
	switch out := r.IntN(10); {
	case c.tar && out < 5:
		c.output = "extract"
		c.topology = []string{"", "extract", "extract-stream"}[r.IntN(3)]
	case out < 2:
		c.output = "writer"
		c.topology = []string{"", "stdout", "stdout-stream"}[r.IntN(3)]
	default:
		c.output = "file"
		c.topology = []string{"", "stream", "buffered", "ranged", "ranged-ordered"}[r.IntN(5)]
	}
	for _, class := range hostileClasses {
		if class == "pieces-only" {
			if enabled[class] {
				c.classes = append(c.classes, class)
			}
			continue
		}
		odds := 6
		if slices.Contains(waitingClasses, class) {
			odds = 12 // each costs a timeout: drawn half as often
		}
		if r.IntN(odds) != 0 || !applies(c, class) {
			continue
		}
		onMirror := c.mirror && r.IntN(2) == 0
		f := &c.primary
		if onMirror {
			f = &c.second
		}
		drawFault(r, c, class, f)
		if enabled[class] {
			c.classes = append(c.classes, class)
		}
	}
	// Credentials go with the request when the primary is its only
	// origin, or when the class that checks them with others is on.
	c.auth = !c.mirror && c.pieces == 0 || c.has("mirror-auth")
	c.userinfo = c.auth && seed%3 == 0
	if !c.has("pieces-only") {
		c.whole = true
	}
	c.primary, c.second = keep(c, c.primary, "silent"), keep(c, c.second, "silent-mirror")
	if !c.has("metalink-size") {
		c.metaSize = c.size
	}
	return c
}

// applies reports whether class makes sense for c.
func applies(c *hostileCase, class string) bool {
	switch class {
	case "liar":
		// Without piece hashes (or a checksum) other bytes under the same
		// validators cannot be told from the file.
		return c.pieces > 0
	case "silent-mirror":
		return c.mirror
	case "metalink-size":
		return c.pieces > 0
	case "mirror-auth":
		return c.mirror || c.pieces > 0
	}
	return true
}

// drawFault sets the faults of class in f (the primary's, or the
// mirror's when f is c.second; some classes always concern one of them).
func drawFault(r *rand.Rand, c *hostileCase, class string, f *origin.Faults) {
	switch class {
	case "switch", "switch-no-if-range":
		c.primary.ChangeETagAfter = 1 + r.IntN(4)
		c.primary.ChangeAgain = r.IntN(3) == 0
		c.primary.IgnoreIfRange = class == "switch-no-if-range"
	case "cut":
		f.ShortBodyRequests = 1 + r.IntN(2)
		f.ShortBody = 1 + r.Int64N(max(c.size, 1))
	case "wrong-range":
		f.WrongContentRange = true
	case "lying-total":
		// A primary that declares a smaller total in every 206 serves, as
		// far as any client can tell, a smaller file: it lies larger. A
		// mirror is measured against the primary: it may lie either way.
		f.WrongTotal = []int64{1, 4096, -1, -c.size / 2}[r.IntN(4)]
		if f == &c.primary {
			f.WrongTotal = max(f.WrongTotal, 1)
		}
	case "liar":
		// That origin is started with another seed (hostileOrigins).
		c.liar = "primary"
		if c.mirror && r.IntN(3) != 0 {
			c.liar = "mirror"
		}
	case "silent":
		c.primary.SilentAfter, c.primary.SilentCount = 1+r.IntN(3), 1
	case "silent-mirror":
		c.second.SilentAfter, c.second.SilentCount = r.IntN(2), 1
	case "stall":
		f.StallAfter, f.StallRequests = r.Int64N(max(c.size, 1)), 1
	case "reset":
		if r.IntN(2) == 0 {
			f.ResetRequests = 1 + r.IntN(2)
		} else {
			f.DropRequests = 1 + r.IntN(2)
		}
	case "metalink-size":
		c.metaSize = c.size + []int64{-1, 1, 1 << 20}[r.IntN(3)]
		c.primary.NoLength = r.IntN(2) == 0 // and the server does not say its size
	}
}

// keep clears the faults of the classes that are not enabled; silent is
// the class of a silent answer of this origin.
func keep(c *hostileCase, f origin.Faults, silent string) origin.Faults {
	var k origin.Faults
	if f.IgnoreIfRange && c.has("switch-no-if-range") || !f.IgnoreIfRange && c.has("switch") {
		k.ChangeETagAfter, k.ChangeAgain, k.IgnoreIfRange = f.ChangeETagAfter, f.ChangeAgain, f.IgnoreIfRange
	}
	if c.has("cut") {
		k.ShortBody, k.ShortBodyRequests = f.ShortBody, f.ShortBodyRequests
	}
	if c.has("wrong-range") {
		k.WrongContentRange = f.WrongContentRange
	}
	if c.has("lying-total") {
		k.WrongTotal = f.WrongTotal
	}
	if c.has(silent) {
		k.SilentAfter, k.SilentCount = f.SilentAfter, f.SilentCount
	}
	if c.has("stall") {
		k.StallAfter, k.StallRequests = f.StallAfter, f.StallRequests
	}
	if c.has("metalink-size") {
		k.NoLength = f.NoLength
	}
	if c.has("reset") {
		k.ResetRequests, k.DropRequests = f.ResetRequests, f.DropRequests
	}
	return k
}

// tarHeader is the size of a one-member tar archive beyond its data: the
// header block and the two zero blocks that end it.
const tarHeader = 512 + 1024

// tarSize rounds size to that of a one-member tar archive.
func tarSize(size int64) int64 {
	data := max(size-tarHeader, 0)
	return tarHeader + (data+511)/512*512
}

// tarData is the member's length in an archive of size bytes.
func tarData(size int64) int64 { return size - tarHeader }

// memberData is the data of the member of the archive of size bytes of
// version seed: the origin's content of seed for one block of an odd
// length, repeated (Fill is too slow to build 40 MB archives again and
// again; a byte out of place still shows).
func memberData(size int64, seed uint64) []byte {
	data := make([]byte, tarData(size))
	block := data[:min(int64(len(data)), 64<<10+13)]
	origin.Fill(block, 0, seed)
	for off := len(block); off < len(data); off += len(block) {
		copy(data[off:], block)
	}
	return data
}

// tarOf is the archive of size bytes whose one member, data.bin, holds
// memberData(size, seed).
func tarOf(size int64, seed uint64) []byte {
	data := memberData(size, seed)
	var b bytes.Buffer
	b.Grow(int(size))
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: "data.bin", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		panic(err)
	}
	if _, err := tw.Write(data); err != nil {
		panic(err)
	}
	if err := tw.Close(); err != nil {
		panic(err)
	}
	if int64(b.Len()) != size {
		panic(fmt.Sprintf("tar of %d bytes, want %d", b.Len(), size))
	}
	return b.Bytes()
}
