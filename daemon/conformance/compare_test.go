package conformance

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// output is script.js's normalized output. A shape is "string", "number",
// "boolean", "null", "=VALUE" (a kept value: status, errorCode, kept
// messages), a map of shapes, or a list of one merged element shape (empty
// when the answer's list was empty).
type output struct {
	Client        string              `json:"client"`
	Steps         []step              `json:"steps"`
	Checks        map[string]bool     `json:"checks"`
	Statuses      map[string][]string `json:"statuses"`
	Notifications map[string][]string `json:"notifications"`
}

type step struct {
	Step   string   `json:"step"`
	Method string   `json:"method"`
	Result any      `json:"result,omitempty"`
	Error  any      `json:"error,omitempty"`
	Order  []string `json:"order,omitempty"`
	Values []string `json:"values,omitempty"`
}

// absentKeys are keys aria2 sends that dlflow legitimately lacks, wherever
// they appear. Each says why.
var absentKeys = map[string]string{
	"bittorrent":             "BitTorrent only (dlflow has none)",
	"infoHash":               "BitTorrent only",
	"numSeeders":             "BitTorrent only",
	"seeder":                 "BitTorrent only",
	"following":              "set for the downloads a torrent or Metalink download spawns (\"followedBy\" of the parent); dlflow's addMetalink adds the files itself",
	"belongsTo":              "same as following",
	"verifiedLength":         "only while aria2 checks a file's pieces (--check-integrity)",
	"verifyIntegrityPending": "only while aria2 has a piece check queued",
}

// optionMethods answer with maps of every option aria2 knows (~150 of
// them, most about BitTorrent, FTP, proxies and aria2's own files); dlflow
// must answer those issue 21 names, with aria2's types. Any other aria2
// option may be absent.
var optionMethods = map[string][]string{
	"getGlobalOption": {"dir", "max-concurrent-downloads", "max-overall-download-limit",
		"max-download-limit", "split", "max-connection-per-server"},
	"getOption": {"dir", "out", "split", "max-connection-per-server", "max-download-limit"},
}

// absentValues are names (methods, notifications) aria2 lists that dlflow
// may leave out: BitTorrent's, and the methods issue 21 does not ask for.
var absentValues = map[string]string{
	"aria2.getPeers":             "BitTorrent only",
	"aria2.onBtDownloadComplete": "BitTorrent only",
	"aria2.changeUri":            "not in issue 21's method list",
	"aria2.forcePause":           "not in issue 21's method list (AriaNg calls it)",
	"aria2.forcePauseAll":        "not in issue 21's method list (AriaNg calls it)",
	"aria2.shutdown":             "not in issue 21's method list: a web client must not stop the service",
	"aria2.forceShutdown":        "same as aria2.shutdown",
}

// extraValues are names dlflow lists that aria2 has not: its own
// methods, which aria2's clients never call.
var extraValues = map[string]string{
	"dlflow.subscribe":   "dlflow's pushed progress (DAEMON-PROTOCOL.md)",
	"dlflow.unsubscribe": "same as dlflow.subscribe",
	"dlflow.onProgress":  "the notification dlflow.subscribe asks for",
}

// compare returns the differences of got (dlflow) from ref (aria2c), one
// readable line each: step (method), key path, aria2's type vs dlflow's.
func compare(ref, got output) []string {
	var d []string
	byName := map[string]step{}
	for _, s := range got.Steps {
		byName[s.Step] = s
	}
	for _, r := range ref.Steps {
		g, ok := byName[r.Step]
		if !ok {
			d = append(d, fmt.Sprintf("%s (%s): step missing in dlflow's output", r.Step, r.Method))
			continue
		}
		d = append(d, compareStep(r, g)...)
	}
	d = append(d, compareMaps("check", ref.Checks, got.Checks)...)
	d = append(d, compareMaps("statuses", ref.Statuses, got.Statuses)...)
	d = append(d, compareMaps("notifications", ref.Notifications, got.Notifications)...)
	return d
}

func compareStep(r, g step) []string {
	name := fmt.Sprintf("%s (%s)", r.Step, r.Method)
	switch {
	case r.Error != nil && g.Error == nil:
		return []string{fmt.Sprintf("%s: aria2 answers an error %s, dlflow a result (%s)", name, js(r.Error), kind(g.Result))}
	case r.Error == nil && g.Error != nil:
		return []string{fmt.Sprintf("%s: aria2 answers a result, dlflow an error %s", name, js(g.Error))}
	}
	var d []string
	c := &shapeCmp{step: name, options: optionMethods[r.Method]}
	if r.Error != nil {
		c.walk("error", r.Error, g.Error)
	} else {
		c.walk("result", r.Result, g.Result)
	}
	d = append(d, c.diffs...)
	if !slices.Equal(r.Order, g.Order) {
		d = append(d, fmt.Sprintf("%s: task order: aria2 %v, dlflow %v", name, r.Order, g.Order))
	}
	for _, v := range r.Values {
		if _, ok := absentValues[v]; !ok && !slices.Contains(g.Values, v) {
			d = append(d, fmt.Sprintf("%s: %s: missing in dlflow", name, v))
		}
	}
	for _, v := range g.Values {
		if _, ok := extraValues[v]; !ok && !slices.Contains(r.Values, v) {
			d = append(d, fmt.Sprintf("%s: %s: extra in dlflow (aria2 has none)", name, v))
		}
	}
	return d
}

// shapeCmp walks two shapes and collects their differences.
type shapeCmp struct {
	step    string
	options []string // for option maps: the keys dlflow must have
	diffs   []string
}

func (c *shapeCmp) add(path, format string, args ...any) {
	c.diffs = append(c.diffs, fmt.Sprintf("%s: %s: ", c.step, path)+fmt.Sprintf(format, args...))
}

func (c *shapeCmp) walk(path string, a, b any) {
	am, aIsMap := a.(map[string]any)
	bm, bIsMap := b.(map[string]any)
	al, aIsList := a.([]any)
	bl, bIsList := b.([]any)
	switch {
	case aIsMap && bIsMap:
		c.walkMap(path, am, bm)
	case aIsList && bIsList:
		switch {
		case len(al) == 0 && len(bl) == 0:
		case len(bl) == 0:
			c.add(path, "aria2 a list of %s, dlflow an empty list", kind(al[0]))
		case len(al) == 0:
			c.add(path, "aria2 an empty list, dlflow a list of %s", kind(bl[0]))
		default:
			c.walk(path+"[]", al[0], bl[0])
		}
	case keptSubset(a, b):
		// dlflow sends some of the values aria2 sends there (a URI aria2
		// lists twice, used and waiting, for two connections).
	default:
		if js(a) != js(b) {
			c.add(path, "aria2 %s, dlflow %s", kind(a), kind(b))
		}
	}
}

// keptSubset tells whether b's kept values ("=x|=y", merged over a list)
// are all among a's.
func keptSubset(a, b any) bool {
	as, ok1 := a.(string)
	bs, ok2 := b.(string)
	if !ok1 || !ok2 || !strings.HasPrefix(as, "=") || !strings.HasPrefix(bs, "=") {
		return false
	}
	have := strings.Split(as, "|")
	for _, v := range strings.Split(bs, "|") {
		if !slices.Contains(have, v) {
			return false
		}
	}
	return true
}

func (c *shapeCmp) walkMap(path string, a, b map[string]any) {
	for _, k := range sortedKeys(a) {
		bv, ok := b[k]
		switch {
		case ok:
			c.walk(path+"."+k, a[k], bv)
		case c.options != nil && path == "result" && !slices.Contains(c.options, k):
			// An aria2 option issue 21 does not name.
		case absentKeys[k] != "":
		default:
			c.add(path+"."+k, "missing in dlflow (aria2: %s)", kind(a[k]))
		}
	}
	for _, k := range sortedKeys(b) {
		if _, ok := a[k]; !ok {
			c.add(path+"."+k, "extra in dlflow (%s; aria2 has no such key)", kind(b[k]))
		}
	}
}

// compareMaps compares the per-name lists or flags (statuses,
// notifications, checks) by value.
func compareMaps[V any](what string, ref, got map[string]V) []string {
	var d []string
	for _, k := range sortedKeys(ref) {
		if g, ok := got[k]; !ok {
			d = append(d, fmt.Sprintf("%s %s: aria2 %s, dlflow none", what, k, js(ref[k])))
		} else if js(g) != js(ref[k]) {
			d = append(d, fmt.Sprintf("%s %s: aria2 %s, dlflow %s", what, k, js(ref[k]), js(g)))
		}
	}
	for _, k := range sortedKeys(got) {
		if _, ok := ref[k]; !ok {
			d = append(d, fmt.Sprintf("%s %s: dlflow %s, aria2 none", what, k, js(got[k])))
		}
	}
	return d
}

// kind names a shape for a message: its type, a kept value, "object
// {a,b}" or "list".
func kind(v any) string {
	switch x := v.(type) {
	case string:
		if !strings.HasPrefix(x, "=") {
			return x
		}
		var vals []string
		for _, v := range strings.Split(x, "|") {
			vals = append(vals, strconv.Quote(strings.TrimPrefix(v, "=")))
		}
		return strings.Join(vals, " or ")
	case map[string]any:
		return "object {" + strings.Join(sortedKeys(x), ",") + "}"
	case []any:
		return "list"
	case nil:
		return "nothing"
	}
	return js(v)
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
