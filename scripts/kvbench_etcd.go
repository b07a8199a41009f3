// kvbench_etcd: N closed-loop writers with etcd's own Go client (clientv3),
// each putting 16-byte values to keys key0000000000.. one at a time, for a
// fixed duration; prints puts/s, p50, p99, max (us) and failures as JSON,
// for `scripts/kvbench.py fsync --etcd --etcd-client BINARY`.
//
// Built against the etcd 3.4 client that Debian ships as source (no module
// download):
//
//	apt-get install -y golang-go golang-etcd-server-dev
//	mkdir -p /tmp/gopath/src/kvbench_etcd && cp scripts/kvbench_etcd.go /tmp/gopath/src/kvbench_etcd/
//	cd /tmp/gopath/src/kvbench_etcd && GO111MODULE=off GOPATH=/tmp/gopath:/usr/share/gocode go build -o kvbench_etcd .
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated")
	clients := flag.Int("clients", 8, "writers, one connection each")
	dur := flag.Duration("duration", 3*time.Second, "run time")
	size := flag.Int("value-size", 16, "value bytes")
	keys := flag.Int("keys", 10000, "keys")
	flag.Parse()
	value := strings.Repeat(".", *size)
	var wg sync.WaitGroup
	lat := make([][]time.Duration, *clients)
	fails := make([]int, *clients)
	start := time.Now()
	end := start.Add(*dur)
	for c := 0; c < *clients; c++ {
		cli, err := clientv3.New(clientv3.Config{Endpoints: strings.Split(*endpoints, ","), DialTimeout: 5 * time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer cli.Close()
		wg.Add(1)
		go func(c int, cli *clientv3.Client) {
			defer wg.Done()
			for j := 0; time.Now().Before(end); j++ {
				k := fmt.Sprintf("key%010d", (j**clients+c)%*keys)
				t := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := cli.Put(ctx, k, value)
				cancel()
				if err != nil {
					fails[c]++
					continue
				}
				lat[c] = append(lat[c], time.Since(t))
			}
		}(c, cli)
	}
	wg.Wait()
	wall := time.Since(start)
	var all []time.Duration
	failed := 0
	for c := range lat {
		all = append(all, lat[c]...)
		failed += fails[c]
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	out := map[string]float64{"requests": float64(len(all)), "failed": float64(failed), "throughput_ops": float64(len(all)) / wall.Seconds()}
	if len(all) > 0 {
		out["p50_us"] = us(all[len(all)/2])
		out["p99_us"] = us(all[len(all)*99/100])
		out["max_us"] = us(all[len(all)-1])
	}
	b, _ := json.Marshal(out)
	fmt.Println(string(b))
}
