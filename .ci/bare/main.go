// Command bare is the load test's yardstick: a bare net/http handler that
// answers every request with a fixed body. The handler's tools/list rate is
// reported as a share of this one's, measured in the same run and setup.
// With -bytes the body is padded to that size, so the handler can also be
// compared with a bare handler sending as much as it does.
package main

import (
	"bytes"
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7181", "listen address")
	size := flag.Int("bytes", 0, "pad the body to this many bytes (0: the smallest tools/list answer)")
	flag.Parse()
	body := []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}` + "\n")
	if pad := *size - len(body); pad > 0 {
		// JSON whitespace: the body stays a valid answer.
		body = append(bytes.Repeat([]byte(" "), pad), body...)
	}
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})))
}
