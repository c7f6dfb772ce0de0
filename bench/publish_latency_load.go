// Load generator and websocket receivers for bench/publish_latency.py (built by it with `go build`; standard
// library only). A native generator: a Python one would saturate a core on this 2-core machine and measure itself.
//
// It opens -clients websockets to the stream, subscribes each to -pattern, then for each rate in -rates POSTs
// single events to the hub at that FIXED rate for -seconds (open loop: request i is due at start + i/rate, whatever
// the answers; at most -conns in flight, a request that waits for a free connection keeps its due time). Each event
// carries its due time (Unix ns) and its phase; each client records the arrival of every event frame. Latency is
// arrival - due time, so a hub that falls behind shows it. One JSON line per rate on stdout.
package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type client struct {
	mu      sync.Mutex
	frames  map[int][]timing // per phase, one per event frame received
	checked int              // frames scanned and decoded both ways
	conn    net.Conn
	wmu     sync.Mutex
}

func (c *client) write(opcode byte, payload []byte) error {
	// Client frames are masked (RFC 6455 5.3); payloads here are small.
	var head []byte
	n := len(payload)
	switch {
	case n < 126:
		head = []byte{0x80 | opcode, 0x80 | byte(n)}
	case n < 65536:
		head = []byte{0x80 | opcode, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		return fmt.Errorf("frame too large")
	}
	mask := make([]byte, 4)
	_, _ = rand.Read(mask)
	body := make([]byte, n)
	for i := range payload {
		body[i] = payload[i] ^ mask[i%4]
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_, err := c.conn.Write(append(append(head, mask...), body...))
	return err
}

// timing is one frame's latency (due -> arrival, ms), split at the hub's time stamp: due -> stamp is the HTTP leg.
type timing struct {
	due            int64 // ns
	total, ingress float64
}

type eventFrame struct {
	Type  string `json:"type"`
	Event struct {
		Time string `json:"time"` // stamped by the hub as it accepted the event
		Data struct {
			Ts    int64 `json:"ts"`
			Phase int   `json:"phase"`
		} `json:"data"`
	} `json:"event"`
}

func dial(wsURL, token, pattern string) (*client, *bufio.Reader, error) {
	u, err := url.Parse(wsURL)
	if err != nil {
		return nil, nil, err
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		return nil, nil, err
	}
	key := make([]byte, 16)
	_, _ = rand.Read(key)
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\nSec-WebSocket-Version: 13\r\n" +
		"Authorization: Bearer " + token + "\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		return nil, nil, err
	}
	r := bufio.NewReaderSize(conn, 1<<16)
	status, err := r.ReadString('\n')
	if err != nil || !strings.Contains(status, " 101 ") {
		return nil, nil, fmt.Errorf("handshake: %q %v", status, err)
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return nil, nil, err
		}
		if line == "\r\n" {
			break
		}
	}
	c := &client{frames: map[int][]timing{}, conn: conn}
	sub := `{"op":"subscribe","id":"s","events":{"pattern":"` + pattern + `"}}`
	return c, r, c.write(1, []byte(sub))
}

// read returns one whole message (continuations joined), answering pings on the way.
func (c *client) read(r *bufio.Reader) (byte, []byte, error) {
	var msg []byte
	var first byte
	for {
		h := make([]byte, 2)
		if _, err := io.ReadFull(r, h); err != nil {
			return 0, nil, err
		}
		fin, opcode, n := h[0]&0x80 != 0, h[0]&0x0f, uint64(h[1]&0x7f)
		switch n {
		case 126:
			b := make([]byte, 2)
			if _, err := io.ReadFull(r, b); err != nil {
				return 0, nil, err
			}
			n = uint64(binary.BigEndian.Uint16(b))
		case 127:
			b := make([]byte, 8)
			if _, err := io.ReadFull(r, b); err != nil {
				return 0, nil, err
			}
			n = binary.BigEndian.Uint64(b)
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			return 0, nil, err
		}
		switch {
		case opcode == 9:
			_ = c.write(10, payload)
			continue
		case opcode == 10:
			continue
		case opcode == 8:
			return 8, payload, nil
		case opcode != 0:
			first = opcode
		}
		msg = append(msg, payload...)
		if fin {
			return first, msg, nil
		}
	}
}

func (c *client) run(r *bufio.Reader, subscribed chan<- error) {
	confirmed := false
	for {
		op, msg, err := c.read(r)
		now := time.Now().UnixNano()
		if err != nil || op == 8 {
			if !confirmed {
				subscribed <- fmt.Errorf("closed before subscribed: %v %s", err, msg)
			}
			return
		}
		if !confirmed {
			if bytes.Contains(msg, []byte(`"type":"subscribed"`)) {
				confirmed = true
				subscribed <- nil
			} else if bytes.Contains(msg, []byte(`"type":"error"`)) {
				subscribed <- fmt.Errorf("subscribe refused: %s", msg)
				return
			}
			continue
		}
		if !bytes.HasPrefix(msg, []byte(`{"type":"event"`)) {
			continue
		}
		f, ok := scanFrame(msg)
		if c.checked < 100 { // the scan against a full decode, on each client's first frames
			c.checked++
			var full eventFrame
			if json.Unmarshal(msg, &full) != nil || full.Event.Time != f.Event.Time || full.Event.Data != f.Event.Data {
				fmt.Fprintf(os.Stderr, "frame scan disagrees with the decode (%v): %s\n", ok, msg)
				os.Exit(3)
			}
		}
		if !ok {
			continue
		}
		stamped, err := time.Parse(time.RFC3339Nano, f.Event.Time)
		if err != nil {
			continue
		}
		due, p := f.Event.Data.Ts, f.Event.Data.Phase
		c.mu.Lock()
		c.frames[p] = append(c.frames[p], timing{due, float64(now-due) / 1e6, float64(stamped.UnixNano()-due) / 1e6})
		c.mu.Unlock()
	}
}

// scanFrame reads the three fields an event frame's latency needs without decoding the frame: at 15,000 frames a
// second a full json.Unmarshal per frame took a good part of this generator's CPU, on the cores the platform uses.
// Each client's first frames are checked against a full decode.
func scanFrame(msg []byte) (eventFrame, bool) {
	var f eventFrame
	i := bytes.Index(msg, []byte(`"time":"`))
	if i < 0 {
		return f, false
	}
	rest := msg[i+8:]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return f, false
	}
	f.Event.Time = string(rest[:j])
	ts, ok1 := scanInt(msg, []byte(`"ts":`))
	phase, ok2 := scanInt(msg, []byte(`"phase":`))
	f.Event.Data.Ts, f.Event.Data.Phase = ts, int(phase)
	return f, ok1 && ok2
}

func scanInt(msg, key []byte) (int64, bool) {
	i := bytes.Index(msg, key)
	if i < 0 {
		return 0, false
	}
	var n int64
	digits := 0
	for _, b := range msg[i+len(key):] {
		if b < '0' || b > '9' {
			break
		}
		n = n*10 + int64(b-'0')
		digits++
	}
	return n, digits > 0
}

type result struct {
	Rate     int     `json:"rate"`
	Sent     int     `json:"sent"`
	Accepted int64   `json:"accepted"`
	Failed   int64   `json:"failed"`
	Achieved float64 `json:"achieved"`
	Frames   int     `json:"frames"`
	Expected int64   `json:"expected"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	// The two legs apart: due -> the hub's stamp (HTTP client, hub), and the stamp -> the client (publish and
	// confirm, RabbitMQ, stream, websocket); each p99 over the frames on its own.
	P99Ingress  float64 `json:"p99_ingress_ms"`
	P99Delivery float64 `json:"p99_delivery_ms"`
	// Of the frames slower than the p99, how many were due in each second of the phase: clustered (a stall) or spread.
	SlowBySecond []int  `json:"slow_by_second"`
	FirstError   string `json:"first_error,omitempty"`
}

func main() {
	hub := flag.String("hub", "", "the hub's POST URL (…/topics/<topic>/events)")
	token := flag.String("token", "", "bearer token for the hub")
	ws := flag.String("ws", "", "the stream's websocket URL")
	wsToken := flag.String("ws-token", "", "bearer token for the stream")
	pattern := flag.String("pattern", "bench.#", "the subscription pattern")
	clients := flag.Int("clients", 10, "websocket clients")
	rates := flag.String("rates", "500,1000,1500", "events/s, one phase each")
	seconds := flag.Float64("seconds", 10, "seconds per phase")
	conns := flag.Int("conns", 64, "HTTP requests in flight at most")
	flag.Parse()

	var all []*client
	subscribed := make(chan error, *clients)
	for i := 0; i < *clients; i++ {
		c, r, err := dial(*ws, *wsToken, *pattern)
		if err != nil {
			fmt.Fprintln(os.Stderr, "websocket:", err)
			os.Exit(1)
		}
		all = append(all, c)
		go c.run(r, subscribed)
	}
	for range all {
		if err := <-subscribed; err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}

	transport := &http.Transport{MaxIdleConnsPerHost: *conns, MaxConnsPerHost: *conns, DisableCompression: true}
	httpClient := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	for phase, text := range strings.Split(*rates, ",") {
		rate, err := strconv.Atoi(strings.TrimSpace(text))
		if err != nil || rate <= 0 {
			fmt.Fprintln(os.Stderr, "bad rate", text)
			os.Exit(2)
		}
		fmt.Println(string(must(json.Marshal(runPhase(httpClient, *hub, *token, all, phase, rate, *seconds, *conns)))))
	}
}

func runPhase(hc *http.Client, hub, token string, all []*client, phase, rate int, seconds float64, conns int) result {
	total := int(float64(rate) * seconds)
	interval := time.Second / time.Duration(rate)
	var accepted, failed atomic.Int64
	var firstError atomic.Value
	var lastDone atomic.Int64
	sem := make(chan struct{}, conns)
	var wg sync.WaitGroup
	start := time.Now().Add(20 * time.Millisecond)
	for i := 0; i < total; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(due time.Time, i int) {
			defer func() { <-sem; wg.Done() }()
			body := fmt.Sprintf(`{"data":{"ts":%d,"phase":%d},"subject":"line%d"}`, due.UnixNano(), phase, i%7)
			req, _ := http.NewRequest("POST", hub, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err == nil {
				text, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 202 {
					accepted.Add(1)
				} else {
					err = fmt.Errorf("%d %s", resp.StatusCode, text)
				}
			}
			if err != nil {
				failed.Add(1)
				firstError.CompareAndSwap(nil, err.Error())
			}
			lastDone.Store(time.Now().UnixNano())
		}(due, i)
	}
	wg.Wait()
	elapsed := float64(lastDone.Load()-start.UnixNano()) / 1e9
	expected := accepted.Load() * int64(len(all))
	// Until every client has every accepted event, or nothing has arrived for 3 s.
	count := func() int {
		n := 0
		for _, c := range all {
			c.mu.Lock()
			n += len(c.frames[phase])
			c.mu.Unlock()
		}
		return n
	}
	last, quiet := count(), time.Now()
	for int64(last) < expected && time.Since(quiet) < 3*time.Second {
		time.Sleep(50 * time.Millisecond)
		if n := count(); n != last {
			last, quiet = n, time.Now()
		}
	}
	var frames []timing
	for _, c := range all {
		c.mu.Lock()
		frames = append(frames, c.frames[phase]...)
		c.mu.Unlock()
	}
	var lat, ingress, delivery []float64
	for _, f := range frames {
		lat, ingress, delivery = append(lat, f.total), append(ingress, f.ingress), append(delivery, f.total-f.ingress)
	}
	sort.Float64s(lat)
	sort.Float64s(ingress)
	sort.Float64s(delivery)
	slow := make([]int, int(seconds)+1)
	if len(lat) > 0 {
		p99 := percentile(lat, 99)
		for _, f := range frames {
			if s := int(float64(f.due-start.UnixNano()) / 1e9); f.total > p99 && s >= 0 && s < len(slow) {
				slow[s]++
			}
		}
	}
	res := result{Rate: rate, Sent: total, Accepted: accepted.Load(), Failed: failed.Load(), Frames: len(lat),
		Expected: expected, Achieved: float64(accepted.Load()) / elapsed}
	if e, ok := firstError.Load().(string); ok {
		res.FirstError = e
	}
	if len(lat) > 0 {
		res.P50, res.P99, res.Max = percentile(lat, 50), percentile(lat, 99), lat[len(lat)-1]
		res.P99Ingress, res.P99Delivery = percentile(ingress, 99), percentile(delivery, 99)
	}
	res.SlowBySecond = slow
	return res
}

// percentile of values sorted ascending (not empty): the value at index len*q/100.
func percentile(sorted []float64, q int) float64 {
	return sorted[min(len(sorted)-1, len(sorted)*q/100)]
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}
