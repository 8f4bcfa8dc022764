// promql-check parses PromQL with Prometheus's own parser, for the tests of the dashboards and
// alert rules: it reads a JSON array of {"source", "expr"} on stdin and writes, for each, the
// parse error (empty when the expression is valid) and the vector selectors it reads (what a
// test against a running Prometheus asks for series). It exits non-zero only when its input or
// output fails; the caller judges the results.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/promql/parser"
)

type query struct {
	Source string `json:"source"`
	Expr   string `json:"expr"`
}

type result struct {
	Source    string   `json:"source"`
	Expr      string   `json:"expr"`
	Error     string   `json:"error"`
	Selectors []string `json:"selectors"`
}

func main() {
	var queries []query
	if err := json.NewDecoder(os.Stdin).Decode(&queries); err != nil {
		fmt.Fprintf(os.Stderr, "promql-check: reading the queries: %v\n", err)
		os.Exit(2)
	}
	p := parser.NewParser(parser.Options{})
	results := make([]result, 0, len(queries))
	for _, q := range queries {
		r := result{Source: q.Source, Expr: q.Expr, Selectors: []string{}}
		expr, err := p.ParseExpr(q.Expr)
		if err != nil {
			r.Error = err.Error()
		} else {
			parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok {
					r.Selectors = append(r.Selectors, vs.String())
				}
				return nil
			})
		}
		results = append(results, r)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(results); err != nil {
		fmt.Fprintf(os.Stderr, "promql-check: writing the results: %v\n", err)
		os.Exit(2)
	}
}
