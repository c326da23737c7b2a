package bench

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Summary describes a sample of one figure (seconds or MB/s) over a cell's
// runs. Its JSON names are part of the results document's contract.
type Summary struct {
	N      int     `json:"n"`
	Mean   float64 `json:"mean"`
	Stddev float64 `json:"stddev"` // sample standard deviation (n-1); 0 for one run
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// MeanLow and MeanHigh bound the 95% confidence interval of the mean
	// (Student's t); MedianLow and MedianHigh that of the median, from
	// order statistics (distribution-free; with fewer than 6 runs it is
	// min-max and covers less than 95%). Equal to the value for one run.
	MeanLow    float64 `json:"mean_ci95_low"`
	MeanHigh   float64 `json:"mean_ci95_high"`
	MedianLow  float64 `json:"median_ci95_low"`
	MedianHigh float64 `json:"median_ci95_high"`
	// Outliers counts the runs outside Tukey's fences (1.5 interquartile
	// ranges beyond the quartiles).
	Outliers int `json:"outliers"`
}

// summarize describes xs; the zero Summary for none.
func summarize(xs []float64) Summary {
	n := len(xs)
	if n == 0 {
		return Summary{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	mean := sum / float64(n)
	var sq float64
	for _, x := range s {
		sq += (x - mean) * (x - mean)
	}
	out := Summary{N: n, Mean: mean, Median: quantile(s, 0.5), Min: s[0], Max: s[n-1],
		MeanLow: mean, MeanHigh: mean, MedianLow: s[0], MedianHigh: s[n-1]}
	if n == 1 {
		out.MedianLow, out.MedianHigh = out.Median, out.Median
		return out
	}
	out.Stddev = math.Sqrt(sq / float64(n-1))
	half := tQuantile975(n-1) * out.Stddev / math.Sqrt(float64(n))
	out.MeanLow, out.MeanHigh = mean-half, mean+half
	if j := medianRank(n); j > 0 {
		out.MedianLow, out.MedianHigh = s[j-1], s[n-j]
	}
	q1, q3 := quantile(s, 0.25), quantile(s, 0.75)
	lo, hi := q1-1.5*(q3-q1), q3+1.5*(q3-q1)
	for _, x := range s {
		if x < lo || x > hi {
			out.Outliers++
		}
	}
	return out
}

// RelativeWidth is the width of the 95% interval of the median over the
// median: 0.05 means the median is known to about ±2.5%.
func (s Summary) RelativeWidth() float64 {
	if s.Median == 0 {
		return math.Inf(1)
	}
	return (s.MedianHigh - s.MedianLow) / s.Median
}

// quantile interpolates linearly between the order statistics of sorted.
func quantile(sorted []float64, q float64) float64 {
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

// medianRank is the largest j such that [x(j), x(n+1-j)] covers the median
// with at least 95% probability, from the binomial(n, 1/2) distribution of
// the number of runs below it; 0 when even min-max covers less.
func medianRank(n int) int {
	best := 0
	for j := 1; j <= n/2; j++ {
		// P(fewer than j of n below the median) on each side.
		tail := 0.0
		for k := 0; k < j; k++ {
			tail += binomialHalf(n, k)
		}
		if 2*tail > 0.05 {
			break
		}
		best = j
	}
	return best
}

// binomialHalf is P(X = k) for X ~ binomial(n, 1/2).
func binomialHalf(n, k int) float64 {
	lg := func(x int) float64 { v, _ := math.Lgamma(float64(x + 1)); return v }
	return math.Exp(lg(n) - lg(k) - lg(n-k) - float64(n)*math.Ln2)
}

// tQuantile975 is the 97.5th percentile of Student's t with df degrees of
// freedom: the factor of a two-sided 95% interval.
func tQuantile975(df int) float64 {
	table := []float64{0, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
		2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
		2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}
	if df < len(table) {
		return table[df]
	}
	// Cornish-Fisher expansion around the normal quantile; exact to three
	// decimals past 30 degrees of freedom.
	z, d := 1.959964, float64(df)
	return z + (z*z*z+z)/(4*d) + (5*z*z*z*z*z+16*z*z*z+3*z)/(96*d*d)
}

// Ratio is a cell's median time over the baseline's, with a 95% interval
// from a bootstrap of both cells' runs (a fixed seed, so that one result
// document always gives the same interval). Below 1 is faster.
type Ratio struct {
	Baseline string  `json:"baseline"` // the baseline cell's label
	Ratio    float64 `json:"ratio"`
	Low      float64 `json:"low"`
	High     float64 `json:"high"`
}

// bootstrapRatio compares the medians of xs and base.
func bootstrapRatio(xs, base []float64) (ratio, low, high float64) {
	if len(xs) == 0 || len(base) == 0 {
		return 0, 0, 0
	}
	mb := median(base)
	if mb == 0 {
		return 0, 0, 0
	}
	ratio = median(xs) / mb
	const resamples = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	ratios := make([]float64, 0, resamples)
	a, b := make([]float64, len(xs)), make([]float64, len(base))
	for range resamples {
		for i := range a {
			a[i] = xs[rng.IntN(len(xs))]
		}
		for i := range b {
			b[i] = base[rng.IntN(len(base))]
		}
		if m := median(b); m > 0 {
			ratios = append(ratios, median(a)/m)
		}
	}
	slices.Sort(ratios)
	return ratio, quantile(ratios, 0.025), quantile(ratios, 0.975)
}
