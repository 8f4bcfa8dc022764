package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/tikv/client-go/v2/config"
	"github.com/tikv/client-go/v2/rawkv"
)

// checkReport is what `check` prints (one JSON object).
type checkReport struct {
	// Ops in the history (the read-back not counted).
	Ops int `json:"ops"`
	// Failed operations (client errors after client-go's retries).
	Failed int `json:"failed"`
	// Keys read back.
	ReadBack int `json:"read_back"`
	// Unread: keys that could not be read back (the check is then incomplete).
	Unread []string `json:"unread,omitempty"`
	// Lost: acknowledged writes missing from the final state.
	Lost []lostWrite `json:"lost,omitempty"`
	// Linearizable: "ok", "illegal", or "unknown" (the checker ran out of time).
	Linearizable string `json:"linearizable"`
	// IllegalKeys: keys whose history is not linearizable (at most 10).
	IllegalKeys []string `json:"illegal_keys,omitempty"`
	// Visualization: porcupine's HTML view of the illegal keys' histories.
	Visualization string  `json:"visualization,omitempty"`
	CheckSeconds  float64 `json:"check_seconds"`
}

// lostWrite explains one lost acknowledged write.
type lostWrite struct {
	Key string `json:"key"`
	// Read: the value read back ("" when absent).
	Read string `json:"read"`
	// Lost: the acknowledged write that should have replaced it.
	Lost string `json:"lost"`
	Why  string `json:"why"`
}

// check reads every key back (appending those reads to the history file), then checks that no
// acknowledged write was lost and that the history is linearizable. Without --pd it checks a
// history that has its final reads already.
func check(args []string) error {
	fs := flag.NewFlagSet("check", flag.ExitOnError)
	pd := fs.String("pd", "", "PD endpoints, comma separated (none: the history has its final reads)")
	security := securityFlags(fs)
	history := fs.String("history", "", "history file written by `workload`")
	var keys workloadConfig
	keys.flags(fs)
	visualize := fs.String("visualize", "", "where to write porcupine's HTML view of a violation")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long the linearizability check may take")
	_ = fs.Parse(args)
	if err := keys.valid(); err != nil {
		return err
	}
	started := time.Now()
	all, err := readHistory(*history)
	if err != nil {
		return err
	}
	if *pd != "" {
		if all, err = appendReadBack(*pd, security(), *history, all, keys); err != nil {
			return err
		}
	}
	var ops, final []op
	for _, o := range all {
		if o.Final {
			final = append(final, o)
		} else {
			ops = append(ops, o)
		}
	}
	rep := checkReport{Ops: len(ops)}
	for _, o := range ops {
		if !o.Ok {
			rep.Failed++
		}
	}
	for _, r := range final {
		if r.Ok {
			rep.ReadBack++
		} else {
			rep.Unread = append(rep.Unread, r.Key)
		}
	}
	rep.Lost = lostWrites(ops, final)
	rep.Linearizable, rep.IllegalKeys = linearizable(all, *timeout)
	if len(rep.IllegalKeys) > 0 && *visualize != "" {
		if err := visualizeKeys(all, rep.IllegalKeys, *visualize); err != nil {
			fmt.Fprintln(os.Stderr, "kvclient: visualization:", err)
		} else {
			rep.Visualization = *visualize
		}
	}
	rep.CheckSeconds = time.Since(started).Seconds()
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// appendReadBack reads every key back and appends those reads to the history (file and slice).
func appendReadBack(pd string, security config.Security, path string, ops []op, keys workloadConfig) ([]op, error) {
	cli, err := connect(pd, security)
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	clients := 0
	for _, o := range ops {
		if o.Client >= clients {
			clients = o.Client + 1
		}
	}
	final := readBack(cli, keys, clients, newClock())
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	enc := json.NewEncoder(f)
	for _, o := range final {
		if err := enc.Encode(o); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return append(ops, final...), nil
}

// readBack gets every key, retrying each for up to a minute, as gets of an extra client.
func readBack(cli *rawkv.Client, keys workloadConfig, client int, clk clock) []op {
	out := make([]op, keys.keys)
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = readOne(cli, workloadKey(i, keys.spread), client, clk)
			}
		}()
	}
	for i := 0; i < keys.keys; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

func readOne(cli *rawkv.Client, key string, client int, clk clock) op {
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		o := op{Client: client, Op: "get", Key: key, Start: clk.now(), Final: true}
		v, err := cli.Get(ctx, []byte(key))
		o.End = clk.now()
		cancel()
		if err == nil {
			o.Ok, o.Found, o.Got = true, v != nil, string(v)
			return o
		}
		o.Kind, o.Err = errKind(err), err.Error()
		if time.Now().After(deadline) {
			return o
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// writes reports whether an operation may have written its value: an acknowledged put or
// successful cas, or a put or cas with an unknown outcome.
func (o *op) writes() bool {
	return o.Op == "put" || (o.Op == "cas" && (o.Succeed || !o.Ok))
}

// lostWrites compares the value read back for each key with the writes to it. The value read
// must come from a write that no acknowledged write started after (that one would be later in
// every order consistent with real time); an absent key must have no acknowledged write.
func lostWrites(ops []op, final []op) []lostWrite {
	byKey := map[string][]*op{}
	for i := range ops {
		if ops[i].writes() {
			byKey[ops[i].Key] = append(byKey[ops[i].Key], &ops[i])
		}
	}
	var lost []lostWrite
	for _, f := range final {
		if !f.Ok {
			continue
		}
		writes := byKey[f.Key]
		var acked []*op
		var source *op
		for _, w := range writes {
			if w.Ok {
				acked = append(acked, w)
			}
			if f.Found && w.Value == f.Got {
				source = w
			}
		}
		if len(acked) == 0 && !f.Found {
			continue
		}
		// The acknowledged write that started last: the one every order puts last among them.
		sort.Slice(acked, func(i, j int) bool { return acked[i].Start < acked[j].Start })
		switch {
		case !f.Found:
			last := acked[len(acked)-1]
			lost = append(lost, lostWrite{Key: f.Key, Lost: last.Value,
				Why: fmt.Sprintf("the key is absent, but %d writes to it were acknowledged", len(acked))})
		case source == nil:
			lost = append(lost, lostWrite{Key: f.Key, Read: f.Got, Why: "the value read was never written"})
		case len(acked) > 0:
			end := source.End
			if !source.Ok {
				end = math.MaxInt64
			}
			if last := acked[len(acked)-1]; last.Start > end {
				lost = append(lost, lostWrite{Key: f.Key, Read: f.Got, Lost: last.Value,
					Why: fmt.Sprintf("the write of %q started %.3f s after the write of the value read had returned, and was acknowledged",
						last.Value, float64(last.Start-end)/1e9)})
			}
		}
	}
	return lost
}

// kvInput and kvOutput are one operation for porcupine.
type kvInput struct {
	op, key, value string
	// prev: what a cas expects; "" when it expects the key to be absent (values are never empty).
	prev string
}

type kvOutput struct {
	// unknown: a failed put or cas, which may or may not have taken effect.
	unknown bool
	found   bool
	got     string
	succeed bool
}

// kvModel is porcupine's model of one key (histories are partitioned by key): the state is the
// key's value, "" when absent.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var order []string
		for _, o := range history {
			k := o.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				order = append(order, k)
			}
			byKey[k] = append(byKey[k], o)
		}
		out := make([][]porcupine.Operation, 0, len(order))
		for _, k := range order {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return "" },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(string), input.(kvInput), output.(kvOutput)
		seen := func() bool { return out.found == (st != "") && (!out.found || out.got == st) }
		switch in.op {
		case "get":
			return seen(), st
		case "put":
			return true, in.value
		default: // cas
			match := st == in.prev
			next := st
			if match {
				next = in.value
			}
			if out.unknown {
				return true, next
			}
			return seen() && out.succeed == match, next
		}
	},
	Hash: func(state interface{}) uint64 {
		h := fnv.New64a()
		_, _ = h.Write([]byte(state.(string)))
		return h.Sum64()
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(kvInput), output.(kvOutput)
		res := "absent"
		if out.found {
			res = fmt.Sprintf("%q", out.got)
		}
		switch {
		case in.op == "get":
			return fmt.Sprintf("get -> %s", res)
		case in.op == "put" && out.unknown:
			return fmt.Sprintf("put %q (unknown outcome)", in.value)
		case in.op == "put":
			return fmt.Sprintf("put %q", in.value)
		case out.unknown:
			return fmt.Sprintf("cas %q -> %q (unknown outcome)", in.prev, in.value)
		default:
			return fmt.Sprintf("cas %q -> %q: %v, was %s", in.prev, in.value, out.succeed, res)
		}
	},
	DescribeState: func(state interface{}) string {
		if state.(string) == "" {
			return "absent"
		}
		return fmt.Sprintf("%q", state)
	},
}

// porcupineOps converts a history: failed gets had no effect and are left out; failed writes
// never return (porcupine's way of saying they may take effect at any time after their call,
// or never).
func porcupineOps(ops []op) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, o := range ops {
		if !o.Ok && o.Op == "get" {
			continue
		}
		in := kvInput{op: o.Op, key: o.Key, value: o.Value, prev: o.Prev}
		res := kvOutput{unknown: !o.Ok, found: o.Found, got: o.Got, succeed: o.Succeed}
		ret := o.End
		if !o.Ok {
			ret = math.MaxInt64
		}
		out = append(out, porcupine.Operation{ClientId: o.Client, Input: in, Call: o.Start, Output: res, Return: ret})
	}
	return out
}

// linearizable checks the whole history, partitioned by key; when it is not, which keys are
// not (each checked alone).
func linearizable(ops []op, timeout time.Duration) (string, []string) {
	history := porcupineOps(ops)
	switch porcupine.CheckOperationsTimeout(kvModel, history, timeout) {
	case porcupine.Ok:
		return "ok", nil
	case porcupine.Unknown:
		return "unknown", nil
	}
	var bad []string
	for _, part := range kvModel.Partition(history) {
		if porcupine.CheckOperationsTimeout(kvModel, part, timeout) == porcupine.Illegal {
			bad = append(bad, part[0].Input.(kvInput).key)
			if len(bad) == 10 {
				break
			}
		}
	}
	return "illegal", bad
}

// visualizeKeys writes porcupine's view of the histories of `keys`.
func visualizeKeys(ops []op, keys []string, path string) error {
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	var sel []op
	for _, o := range ops {
		if want[o.Key] {
			sel = append(sel, o)
		}
	}
	_, info := porcupine.CheckOperationsVerbose(kvModel, porcupineOps(sel), time.Minute)
	return porcupine.VisualizePath(kvModel, info, path)
}
