package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tikv/client-go/v2/rawkv"
)

// An op is one operation of a workload as the history file records it (one JSON line each).
// Times are wall-clock unix nanoseconds, taken from one monotonic clock anchored at the start
// of the process, so that they order correctly and line up with the test's own clock.
type op struct {
	Client int    `json:"c"`
	Op     string `json:"op"` // get, put or cas
	Key    string `json:"key"`
	// Value is what a put or cas writes (unique per write).
	Value string `json:"value,omitempty"`
	// Prev is what a cas expects; PrevAbsent: that the key does not exist.
	Prev       string `json:"prev,omitempty"`
	PrevAbsent bool   `json:"prev_absent,omitempty"`
	Start      int64  `json:"start"`
	End        int64  `json:"end"`
	// Ok: the client returned no error. A failed get had no effect; a failed put or cas has an
	// unknown outcome (it may or may not have been applied).
	Ok bool `json:"ok"`
	// Found and Got: a get's result, or a cas's previous value.
	Found bool   `json:"found,omitempty"`
	Got   string `json:"got,omitempty"`
	// Succeed: a cas swapped.
	Succeed bool `json:"succeed,omitempty"`
	// Kind and Err: why it failed, as the application sees it (after client-go's retries).
	Kind string `json:"kind,omitempty"`
	Err  string `json:"err,omitempty"`
	// Final: a read of `check`, after the workload stopped.
	Final bool `json:"final,omitempty"`
}

// clock gives wall-clock unix nanoseconds that never go backwards.
type clock struct{ base time.Time }

func newClock() clock      { return clock{base: time.Now()} }
func (c clock) now() int64 { return c.base.UnixNano() + time.Since(c.base).Nanoseconds() }

// workloadKey is the i-th key of the key set.
func workloadKey(i, spread int) string {
	// tikv-sim's bootstrap store splits the key space at sim000001..sim0000NN: a prefix per
	// initial region spreads the keys over all of them (and so over every store's leaders).
	return fmt.Sprintf("sim%06d/wl/%06d", i%spread, i)
}

// errKind names a client error as an application would count it.
// errCASRetried marks a CAS that client-go answered "not swapped" with the CAS's own value.
var errCASRetried = errors.New("client-go reported the CAS as not swapped, but the value is its own: a retried attempt after the first took effect")

func errKind(err error) string {
	if errors.Is(err, errCASRetried) {
		return "cas-retried"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timeout"
	}
	s := strings.ToLower(err.Error())
	for _, k := range []struct{ needle, kind string }{
		{"deadline exceeded", "timeout"},
		{"server is busy", "server-busy"},
		{"not leader", "not-leader"},
		{"region unavailable", "region-unavailable"},
		{"epoch not match", "epoch-not-match"},
		{"store not match", "store-not-match"},
		{"region not found", "region-not-found"},
		{"stale command", "stale-command"},
		{"connection refused", "store-unreachable"},
		{"unavailable", "store-unreachable"},
		{"transport", "store-unreachable"},
		{"eof", "store-unreachable"},
		{"pd", "pd"},
	} {
		if strings.Contains(s, k.needle) {
			return k.kind
		}
	}
	return "other"
}

// workloadConfig is what `workload` and `check` share: which keys.
type workloadConfig struct {
	keys   int
	spread int
}

func (w *workloadConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&w.keys, "keys", 1000, "number of keys")
	fs.IntVar(&w.spread, "spread", 48, "key prefixes (sim000000..): tikv-sim's initial regions")
}

func (w *workloadConfig) valid() error {
	if w.keys < 1 || w.spread < 1 {
		return fmt.Errorf("--keys and --spread must be positive")
	}
	return nil
}

// workload runs concurrent clients doing gets, puts (unique values) and CAS on a key set until
// stdin closes or SIGTERM, recording every operation in the history file.
func workload(args []string) error {
	fs := flag.NewFlagSet("workload", flag.ExitOnError)
	pd := fs.String("pd", "", "PD endpoints, comma separated")
	security := securityFlags(fs)
	history := fs.String("history", "", "history file to write (JSON lines)")
	var keys workloadConfig
	keys.flags(fs)
	clients := fs.Int("clients", 4, "concurrent clients (goroutines sharing one client, as an application would)")
	readPct := fs.Int("read-percent", 40, "percentage of gets")
	casPct := fs.Int("cas-percent", 20, "percentage of compare-and-swaps; the rest are puts")
	rate := fs.Float64("rate", 100, "operations per second over all clients (0: as fast as they go)")
	opTimeout := fs.Duration("op-timeout", 60*time.Second, "timeout of one operation (client-go retries within it)")
	_ = fs.Parse(args)
	if err := keys.valid(); err != nil {
		return err
	}
	if *history == "" || *clients < 1 || *readPct < 0 || *casPct < 0 || *readPct+*casPct > 100 {
		return fmt.Errorf("bad flags: --history is required, --clients positive, --read-percent + --cas-percent at most 100")
	}
	f, err := os.Create(*history)
	if err != nil {
		return err
	}
	cli, err := connect(*pd, security())
	if err != nil {
		return err
	}
	defer cli.Close()

	// Stop on stdin EOF (the test drops its end) or SIGTERM.
	stop, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	go func() {
		<-sigs
		cancel()
	}()

	clk := newClock()
	records := make(chan op, 1024)
	written := make(chan int)
	go writeHistory(f, records, written)

	var interval time.Duration
	if *rate > 0 {
		interval = time.Duration(float64(*clients) / *rate * float64(time.Second))
	}
	fmt.Println(`{"ready":true}`)
	var wg sync.WaitGroup
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			runClient(stop, cli, c, keys, *readPct, *casPct, interval, *opTimeout, clk, records)
		}(c)
	}
	wg.Wait()
	close(records)
	n := <-written
	if err := f.Close(); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"stopped": true, "ops": n})
}

// runClient is one client's loop: an operation on a random key every `interval` (or back to
// back), until `stop`. What it last saw of each key is what its next cas expects.
func runClient(stop context.Context, cli *rawkv.Client, c int, keys workloadConfig, readPct, casPct int,
	interval, opTimeout time.Duration, clk clock, out chan<- op) {
	rng := rand.New(rand.NewSource(time.Now().UnixNano() + int64(c)*7919))
	seen := map[string]*string{}
	seq := 0
	next := time.Now()
	for stop.Err() == nil {
		if interval > 0 {
			if d := time.Until(next); d > 0 {
				select {
				case <-stop.Done():
					return
				case <-time.After(d):
				}
			}
			next = next.Add(interval)
			if now := time.Now(); next.Before(now) {
				next = now // never catch up in a burst after a slow operation
			}
		}
		key := workloadKey(rng.Intn(keys.keys), keys.spread)
		o := op{Client: c, Key: key}
		roll := rng.Intn(100)
		switch {
		case roll < readPct:
			o.Op = "get"
		case roll < readPct+casPct:
			o.Op = "cas"
			if p := seen[key]; p != nil {
				o.Prev = *p
			} else {
				o.PrevAbsent = true
			}
		default:
			o.Op = "put"
		}
		if o.Op != "get" {
			seq++
			o.Value = fmt.Sprintf("c%d-%d", c, seq)
		}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		o.Start = clk.now()
		var err error
		switch o.Op {
		case "get":
			var v []byte
			v, err = cli.Get(ctx, []byte(key))
			o.Found, o.Got = v != nil, string(v)
		case "put":
			err = cli.Put(ctx, []byte(key), []byte(o.Value))
		case "cas":
			var prev, old []byte
			if !o.PrevAbsent {
				prev = []byte(o.Prev)
			}
			old, o.Succeed, err = cli.CompareAndSwap(ctx, []byte(key), prev, []byte(o.Value))
			o.Found, o.Got = old != nil, string(old)
			// "Not swapped, the value is <this CAS's own unique value>": an earlier attempt of
			// this CAS took effect and client-go's retry (RawKV CAS carries no request id, in
			// TiKV as here) compared against it. The answer the application got is wrong, and
			// the outcome unknown to it: record it as such, under a kind of its own.
			if err == nil && !o.Succeed && o.Found && o.Got == o.Value {
				err = errCASRetried
			}
		}
		o.End = clk.now()
		cancel()
		if err != nil {
			o.Kind, o.Err = errKind(err), err.Error()
			// After a write with an unknown outcome the key's value is unknown too.
			if o.Op != "get" {
				delete(seen, key)
			}
		} else {
			o.Ok = true
			switch {
			case o.Op == "put" || (o.Op == "cas" && o.Succeed):
				v := o.Value
				seen[key] = &v
			case o.Found:
				v := o.Got
				seen[key] = &v
			default:
				delete(seen, key)
			}
		}
		out <- o
	}
}

// writeHistory writes every record as a JSON line, flushing every 100 ms; sends the count when
// `records` is closed and everything is on disk.
func writeHistory(f *os.File, records <-chan op, done chan<- int) {
	w := bufio.NewWriterSize(f, 1<<16)
	enc := json.NewEncoder(w)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	n := 0
	for {
		select {
		case r, ok := <-records:
			if !ok {
				_ = w.Flush()
				_ = f.Sync()
				done <- n
				return
			}
			_ = enc.Encode(r)
			n++
		case <-tick.C:
			_ = w.Flush()
		}
	}
}

// readHistory reads a history file.
func readHistory(path string) ([]op, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ops []op
	dec := json.NewDecoder(bufio.NewReader(f))
	for {
		var o op
		if err := dec.Decode(&o); err == io.EOF {
			return ops, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: record %d: %w", path, len(ops)+1, err)
		}
		ops = append(ops, o)
	}
}
