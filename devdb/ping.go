package main

// A bare MongoDB wire-protocol ping, so that "ready" means the server
// answers commands, not merely that its port accepts connections. It is
// a dozen lines of OP_MSG and needs no driver.

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"time"
)

const opMsg = 2013

// waitReady pings addr until it answers {ok: 1} or ctx ends.
func waitReady(ctx context.Context, addr string) error {
	var last error

	for {
		if last = ping(ctx, addr); last == nil {
			return nil
		}

		select {
		case <-ctx.Done():
			return last
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func ping(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 2 * time.Second}

	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()

	_ = c.SetDeadline(time.Now().Add(5 * time.Second))

	if _, err := c.Write(pingMsg(1)); err != nil {
		return err
	}

	var hdr [16]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return fmt.Errorf("reading reply header: %w", err)
	}

	n := binary.LittleEndian.Uint32(hdr[0:])
	op := binary.LittleEndian.Uint32(hdr[12:])

	if op != opMsg || n < 16 || n > 1<<20 {
		return fmt.Errorf("unexpected reply (opcode %d, length %d)", op, n)
	}

	body := make([]byte, n-16)
	if _, err := io.ReadFull(c, body); err != nil {
		return fmt.Errorf("reading reply body: %w", err)
	}

	// The reply document holds `ok` as a double; 1.0 means success.
	var one [8]byte
	binary.LittleEndian.PutUint64(one[:], math.Float64bits(1))

	if !bytes.Contains(body, append([]byte("\x01ok\x00"), one[:]...)) {
		return errors.New("ping did not answer ok: 1")
	}

	return nil
}

// pingMsg builds OP_MSG {ping: 1, $db: "admin"}.
func pingMsg(requestID uint32) []byte {
	var elems []byte

	elems = append(elems, 0x10) // int32
	elems = append(elems, "ping\x00"...)
	elems = binary.LittleEndian.AppendUint32(elems, 1)

	elems = append(elems, 0x02) // string
	elems = append(elems, "$db\x00"...)
	elems = binary.LittleEndian.AppendUint32(elems, uint32(len("admin")+1))
	elems = append(elems, "admin\x00"...)

	docLen := 4 + len(elems) + 1
	msgLen := 16 + 4 + 1 + docLen

	m := make([]byte, 0, msgLen)
	m = binary.LittleEndian.AppendUint32(m, uint32(msgLen))
	m = binary.LittleEndian.AppendUint32(m, requestID)
	m = binary.LittleEndian.AppendUint32(m, 0) // responseTo
	m = binary.LittleEndian.AppendUint32(m, opMsg)
	m = binary.LittleEndian.AppendUint32(m, 0) // flagBits
	m = append(m, 0)                           // section kind 0: body
	m = binary.LittleEndian.AppendUint32(m, uint32(docLen))
	m = append(m, elems...)
	m = append(m, 0x00)

	return m
}
