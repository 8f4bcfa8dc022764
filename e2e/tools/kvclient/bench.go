package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/tikv/client-go/v2/rawkv"
)

// benchResult is what `bench` prints (one JSON line).
type benchResult struct {
	Clients     int     `json:"clients"`
	ReadPercent int     `json:"read_percent"`
	Seconds     float64 `json:"seconds"`
	Ops         int     `json:"ops"`
	Errors      int     `json:"errors"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	P50Micros   int64   `json:"p50_us"`
	P99Micros   int64   `json:"p99_us"`
	MaxMicros   int64   `json:"max_us"`
	// The longest time between two successful operations (any client): what an event such as a
	// leader transfer during the run cost the clients.
	LongestGapMs float64 `json:"longest_gap_ms"`
	FirstError   string  `json:"first_error,omitempty"`
	Loaded       int     `json:"loaded"`
	LoadSeconds  float64 `json:"load_seconds"`
}

func benchKey(i int) []byte { return []byte(fmt.Sprintf("bench/%08d", i)) }

func bench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	pd := fs.String("pd", "", "PD endpoints, comma separated")
	clients := fs.Int("clients", 1, "concurrent clients (goroutines sharing one client, as an application would)")
	duration := fs.Duration("duration", 10*time.Second, "how long to run the load (0: load only)")
	readPct := fs.Int("read-percent", 50, "percentage of gets; the rest are puts")
	keys := fs.Int("keys", 10000, "key space size")
	valueSize := fs.Int("value-size", 100, "value size in bytes")
	load := fs.Int("load", 0, "keys to write with BatchPut before the run (from key 0)")
	opTimeout := fs.Duration("op-timeout", 30*time.Second, "timeout of one operation")
	security := securityFlags(fs)
	_ = fs.Parse(args)
	if *clients < 1 || *keys < 1 || *readPct < 0 || *readPct > 100 {
		return fmt.Errorf("bad flags: --clients and --keys must be positive, --read-percent 0..100")
	}
	cli, err := connect(*pd, security())
	if err != nil {
		return err
	}
	defer cli.Close()
	value := make([]byte, *valueSize)
	for i := range value {
		value[i] = byte('a' + i%26)
	}
	res := benchResult{Clients: *clients, ReadPercent: *readPct}

	if *load > 0 {
		start := time.Now()
		if err := loadKeys(cli, *load, value, *opTimeout); err != nil {
			return err
		}
		res.Loaded, res.LoadSeconds = *load, time.Since(start).Seconds()
	}

	type sample struct {
		end time.Time
		lat time.Duration
	}
	var mu sync.Mutex
	var samples []sample
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(*duration)
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			var local []sample
			errors, firstErr := 0, ""
			for time.Now().Before(deadline) {
				k := benchKey(rng.Intn(*keys))
				ctx, cancel := context.WithTimeout(context.Background(), *opTimeout)
				t0 := time.Now()
				var err error
				if rng.Intn(100) < *readPct {
					_, err = cli.Get(ctx, k)
				} else {
					err = cli.Put(ctx, k, value)
				}
				cancel()
				t1 := time.Now()
				if err != nil {
					errors++
					if firstErr == "" {
						firstErr = err.Error()
					}
					continue
				}
				local = append(local, sample{t1, t1.Sub(t0)})
			}
			mu.Lock()
			samples = append(samples, local...)
			res.Errors += errors
			if res.FirstError == "" {
				res.FirstError = firstErr
			}
			mu.Unlock()
		}(int64(c) + 1)
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Ops = len(samples)
	if res.Seconds > 0 {
		res.OpsPerSec = float64(res.Ops) / res.Seconds
	}
	if len(samples) > 0 {
		lats := make([]time.Duration, len(samples))
		ends := make([]time.Time, len(samples))
		for i, s := range samples {
			lats[i], ends[i] = s.lat, s.end
		}
		sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
		sort.Slice(ends, func(i, j int) bool { return ends[i].Before(ends[j]) })
		res.P50Micros = lats[len(lats)/2].Microseconds()
		res.P99Micros = lats[len(lats)*99/100].Microseconds()
		res.MaxMicros = lats[len(lats)-1].Microseconds()
		prev := start
		for _, e := range ends {
			if g := e.Sub(prev); g.Seconds()*1000 > res.LongestGapMs {
				res.LongestGapMs = g.Seconds() * 1000
			}
			prev = e
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// loadKeys writes keys [0, n) in batches of 256 (BatchPut splits them by region).
func loadKeys(cli *rawkv.Client, n int, value []byte, timeout time.Duration) error {
	const batch = 256
	for i := 0; i < n; i += batch {
		var ks, vs [][]byte
		for j := i; j < n && j < i+batch; j++ {
			ks = append(ks, benchKey(j))
			vs = append(vs, value)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := cli.BatchPut(ctx, ks, vs)
		cancel()
		if err != nil {
			return fmt.Errorf("loading keys %d..%d: %w", i, i+len(ks), err)
		}
	}
	return nil
}
