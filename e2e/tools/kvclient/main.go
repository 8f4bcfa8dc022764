// kvclient drives a TiKV cluster through the official Go client (github.com/tikv/client-go/v2
// v2.0.7, RawKV), so that tests and benchmarks exercise the store with the client real
// applications use. v2.0.7 rather than v2.0.4: v2.0.4's batch client never reconnects to a store
// that was down and came back on the same address (its gRPC connection stays idle; fixed by
// client-go#833, in v2.0.7).
//
//	kvclient serve --pd HOST:PORT[,...]     JSON requests on stdin, one per line; JSON answers on
//	                                        stdout in the same order (one long-lived client, with
//	                                        its region cache, for tests that act between calls)
//	kvclient bench --pd ... [flags]         a closed-loop load; prints one JSON line of results
//	kvclient workload --pd ... --history F  concurrent gets, puts (unique values) and CAS on a key
//	                                        set until stdin closes or SIGTERM; every operation's
//	                                        start, end and result in F (JSON lines)
//	kvclient check --pd ... --history F     reads every key back; prints whether an acknowledged
//	                                        write was lost and whether the history is linearizable
//	                                        (porcupine, partitioned by key)
//
// Every subcommand takes --ca, --cert and --key for a cluster with TLS (client-go's
// config.Security: the CA bundle is read once, the client certificate at every handshake, so a
// renewed one is used by the next connection).
//
// Keys and values are strings in the JSON.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	plog "github.com/pingcap/log"
	"github.com/tikv/client-go/v2/config"
	"github.com/tikv/client-go/v2/rawkv"
	"go.uber.org/zap/zapcore"
)

// client-go logs through pingcap/log, which writes to stdout by default; stdout carries the
// answers here, so its log goes to stderr.
func init() {
	lg, props, err := plog.InitLoggerWithWriteSyncer(&plog.Config{Level: "info"},
		zapcore.AddSync(os.Stderr), zapcore.AddSync(os.Stderr))
	if err == nil {
		plog.ReplaceGlobals(lg, props)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "bench":
		err = bench(os.Args[2:])
	case "workload":
		err = workload(os.Args[2:])
	case "check":
		err = check(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kvclient:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kvclient serve|bench|workload|check --pd HOST:PORT[,HOST:PORT...] [flags]")
	os.Exit(2)
}

// securityFlags adds --ca, --cert and --key to fs; the result gives them as client-go's Security.
func securityFlags(fs *flag.FlagSet) func() config.Security {
	ca := fs.String("ca", "", "CA bundle (PEM) the cluster's certificates chain to; enables TLS")
	cert := fs.String("cert", "", "client certificate (PEM), with --ca")
	key := fs.String("key", "", "its private key (PEM)")
	return func() config.Security { return config.NewSecurity(*ca, *cert, *key, nil) }
}

func connect(pd string, security config.Security) (*rawkv.Client, error) {
	if pd == "" {
		return nil, fmt.Errorf("--pd is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := rawkv.NewClientWithOpts(ctx, strings.Split(pd, ","), rawkv.WithSecurity(security))
	if err != nil {
		return nil, fmt.Errorf("connecting to PD %s: %w", pd, err)
	}
	// CAS needs Put and Delete to go through the same atomic path on the store.
	cli.SetAtomicForCAS(true)
	return cli, nil
}

// request is one line of `serve` input.
type request struct {
	Op     string   `json:"op"`
	Key    string   `json:"key,omitempty"`
	Value  string   `json:"value,omitempty"`
	Keys   []string `json:"keys,omitempty"`
	Values []string `json:"values,omitempty"`
	Start  string   `json:"start,omitempty"`
	End    string   `json:"end,omitempty"`
	Limit  int      `json:"limit,omitempty"`
	// CAS: the expected previous value, or none when PrevNotExist.
	Prev         string `json:"prev,omitempty"`
	PrevNotExist bool   `json:"prev_not_exist,omitempty"`
	TimeoutMs    int    `json:"timeout_ms,omitempty"`
}

// response is one line of `serve` output.
type response struct {
	Ok bool `json:"ok"`
	// Error is the client's error text when Ok is false.
	Error   string      `json:"error,omitempty"`
	Found   bool        `json:"found,omitempty"`
	Value   string      `json:"value,omitempty"`
	Values  []*string   `json:"values,omitempty"`
	Pairs   [][2]string `json:"pairs,omitempty"`
	Succeed bool        `json:"succeed,omitempty"`
	Micros  int64       `json:"micros"`
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	pd := fs.String("pd", "", "PD endpoints, comma separated")
	security := securityFlags(fs)
	_ = fs.Parse(args)
	cli, err := connect(*pd, security())
	if err != nil {
		return err
	}
	defer cli.Close()
	in := bufio.NewReader(os.Stdin)
	out := json.NewEncoder(os.Stdout)
	// Tell the caller the client is connected.
	if err := out.Encode(response{Ok: true}); err != nil {
		return err
	}
	for {
		line, err := in.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			var req request
			var resp response
			if jerr := json.Unmarshal(line, &req); jerr != nil {
				resp = response{Error: "bad request: " + jerr.Error()}
			} else {
				resp = do(cli, &req)
			}
			if err := out.Encode(resp); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func bs(s []string) [][]byte {
	out := make([][]byte, len(s))
	for i, x := range s {
		out[i] = []byte(x)
	}
	return out
}

func do(cli *rawkv.Client, r *request) response {
	timeout := 30 * time.Second
	if r.TimeoutMs > 0 {
		timeout = time.Duration(r.TimeoutMs) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	var resp response
	var err error
	switch r.Op {
	case "put":
		err = cli.Put(ctx, []byte(r.Key), []byte(r.Value))
	case "get":
		var v []byte
		v, err = cli.Get(ctx, []byte(r.Key))
		resp.Found, resp.Value = v != nil, string(v)
	case "batch_put":
		err = cli.BatchPut(ctx, bs(r.Keys), bs(r.Values))
	case "batch_get":
		var vs [][]byte
		vs, err = cli.BatchGet(ctx, bs(r.Keys))
		for _, v := range vs {
			if v == nil {
				resp.Values = append(resp.Values, nil)
			} else {
				s := string(v)
				resp.Values = append(resp.Values, &s)
			}
		}
	case "delete":
		err = cli.Delete(ctx, []byte(r.Key))
	case "batch_delete":
		err = cli.BatchDelete(ctx, bs(r.Keys))
	case "delete_range":
		err = cli.DeleteRange(ctx, []byte(r.Start), []byte(r.End))
	case "scan", "reverse_scan":
		var ks, vs [][]byte
		if r.Op == "scan" {
			ks, vs, err = cli.Scan(ctx, []byte(r.Start), []byte(r.End), r.Limit)
		} else {
			ks, vs, err = cli.ReverseScan(ctx, []byte(r.Start), []byte(r.End), r.Limit)
		}
		for i := range ks {
			resp.Pairs = append(resp.Pairs, [2]string{string(ks[i]), string(vs[i])})
		}
	case "cas":
		var prev []byte
		if !r.PrevNotExist {
			prev = []byte(r.Prev)
		}
		var old []byte
		old, resp.Succeed, err = cli.CompareAndSwap(ctx, []byte(r.Key), prev, []byte(r.Value))
		resp.Found, resp.Value = old != nil, string(old)
	default:
		err = fmt.Errorf("unknown op %q", r.Op)
	}
	resp.Micros = time.Since(start).Microseconds()
	if err != nil {
		resp.Error = err.Error()
	} else {
		resp.Ok = true
	}
	return resp
}
