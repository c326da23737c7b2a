package pipeline

import "time"

// Sources returns the servers the resource's bytes may come from: URL
// (the primary, index 0) then Mirrors, in that order. A stage that fetches
// from one server only uses URL and may ignore the rest.
func (r *Resource) Sources() []string {
	if r == nil {
		return nil
	}
	return append([]string{r.URL}, r.Mirrors...)
}

// SourceReporter is implemented by a stage that fetches from several
// servers at once (http.reader with Resource.Mirrors).
type SourceReporter interface {
	// SourceStats returns one entry per source of the current or last
	// run, in the order of Resource.Sources; nil before the first run.
	SourceStats() []SourceStats
}

// SourceStats is what one source did in a run.
type SourceStats struct {
	// URL is the source's URL, redacted (no password, no query secrets).
	URL string
	// Bytes is what it delivered downstream in this run.
	Bytes int64
	// Errors counts its failed requests, those retried included.
	Errors int64
	// Connections is how many connections work on it now.
	Connections int
	// Active is how long it had requests open (summed over time, not over
	// connections): Bytes/Active is its rate while it was used.
	Active time.Duration
	// Dropped says why it is no longer used ("" while it is): a size or
	// validators that disagree with the primary's, a permanent error, or
	// failures in a row.
	Dropped string
}

// Rate is the source's bytes per second while it was used, 0 when unknown.
func (s SourceStats) Rate() float64 {
	if s.Active <= 0 {
		return 0
	}
	return float64(s.Bytes) / s.Active.Seconds()
}

// PieceHashes are the digests of consecutive pieces of a resource: piece i
// is the bytes [i*Length, min((i+1)*Length, Size)).
type PieceHashes struct {
	// Length is the length of every piece but the last, at least 1.
	Length int64
	// Algorithm names the digest: "sha256", "sha512", "sha1" or "md5".
	Algorithm string
	// Sums holds the digest of each piece, in order.
	Sums [][]byte
}
