// Command bare is the load test's yardstick: a bare net/http handler that
// answers every request with a fixed body. The handler's tools/list rate is
// reported as a share of this one's, measured in the same run and setup.
package main

import (
	"flag"
	"log"
	"net/http"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:7181", "listen address")
	flag.Parse()
	body := []byte(`{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}` + "\n")
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})))
}
