package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// qmpClient speaks the QEMU Machine Protocol over a unix socket: one
// command at a time, with asynchronous events collected on the side.
type qmpClient struct {
	conn net.Conn
	cmd  sync.Mutex // one command in flight

	mu      sync.Mutex
	events  []qmpEvent
	evWake  chan struct{}
	replies chan map[string]json.RawMessage
	closed  chan struct{}
}

type qmpEvent struct {
	Name string
	Data map[string]any
	T    time.Time
}

func newQMP(c net.Conn) (*qmpClient, error) {
	q := &qmpClient{conn: c, evWake: make(chan struct{}), replies: make(chan map[string]json.RawMessage, 1), closed: make(chan struct{})}
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	greeting, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("reading QMP greeting: %w", err)
	}
	if !strings.Contains(string(greeting), "QMP") {
		return nil, fmt.Errorf("unexpected QMP greeting %q", greeting)
	}
	c.SetReadDeadline(time.Time{})
	go q.read(r)
	if _, err := q.execute("qmp_capabilities", nil); err != nil {
		return nil, err
	}
	return q, nil
}

func (q *qmpClient) read(r *bufio.Reader) {
	defer close(q.closed)
	for {
		b, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(b, &m) != nil {
			continue
		}
		if ev, ok := m["event"]; ok {
			e := qmpEvent{T: time.Now()}
			json.Unmarshal(ev, &e.Name)
			json.Unmarshal(m["data"], &e.Data)
			q.mu.Lock()
			q.events = append(q.events, e)
			close(q.evWake)
			q.evWake = make(chan struct{})
			q.mu.Unlock()
			continue
		}
		q.replies <- m
	}
}

func (q *qmpClient) execute(command string, args map[string]any) (json.RawMessage, error) {
	q.cmd.Lock()
	defer q.cmd.Unlock()
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, _ := json.Marshal(req)
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", command, err)
	}
	select {
	case m := <-q.replies:
		if e, ok := m["error"]; ok {
			return nil, fmt.Errorf("QMP %s %s: %s", command, b, e)
		}
		return m["return"], nil
	case <-q.closed:
		return nil, fmt.Errorf("QMP %s: connection closed", command)
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("QMP %s: no reply in 30s", command)
	}
}

// waitEvent waits for an event named name whose data[key] equals value,
// among the events received at or after since.
func (q *qmpClient) waitEvent(name, key, value string, since time.Time, timeout time.Duration) (qmpEvent, error) {
	deadline := time.After(timeout)
	for {
		q.mu.Lock()
		for _, e := range q.events {
			if e.Name == name && !e.T.Before(since) && fmt.Sprint(e.Data[key]) == value {
				q.mu.Unlock()
				return e, nil
			}
		}
		wake := q.evWake
		q.mu.Unlock()
		select {
		case <-wake:
		case <-q.closed:
			return qmpEvent{}, fmt.Errorf("QMP closed while waiting for %s %s=%s", name, key, value)
		case <-deadline:
			return qmpEvent{}, fmt.Errorf("no QMP event %s %s=%s within %v", name, key, value, timeout)
		}
	}
}

func (q *qmpClient) close() { q.conn.Close() }

// qdevice is one -device / device_add: a driver and its properties, in order.
type qdevice struct {
	driver string
	props  [][2]string
}

func (d qdevice) commandLine() string {
	s := d.driver
	for _, p := range d.props {
		s += "," + p[0] + "=" + strings.ReplaceAll(p[1], ",", ",,")
	}
	return s
}

func (d qdevice) qmpArgs() map[string]any {
	m := map[string]any{"driver": d.driver}
	for _, p := range d.props {
		m[p[0]] = p[1]
	}
	return m
}

func (d qdevice) id() string {
	for _, p := range d.props {
		if p[0] == "id" {
			return p[1]
		}
	}
	return ""
}

// devices returns the QEMU devices that make up the docked disk on the
// given USB bus: the USB function and, for bot/uas, the SCSI disk behind it.
func (d Disk) devices(bus string) []qdevice {
	usb := qdevice{props: [][2]string{{"id", d.ID + "-usb"}, {"bus", bus}}}
	if d.Serial != "" {
		usb.props = append(usb.props, [2]string{"serial", d.Serial})
	}
	switch d.transport() {
	case "ahci":
		hd := qdevice{driver: "ide-hd", props: [][2]string{{"id", d.ID + "-hd"}, {"bus", d.ID + "-ahci.0"}, {"drive", d.ID}}}
		if d.Product != "" {
			hd.props = append(hd.props, [2]string{"model", d.Product})
		}
		if d.Serial != "" {
			hd.props = append(hd.props, [2]string{"serial", d.Serial})
		}
		return []qdevice{{driver: "ahci", props: [][2]string{{"id", d.ID + "-ahci"}}}, hd}
	case "storage":
		usb.driver = "usb-storage"
		usb.props = append(usb.props, [2]string{"drive", d.ID})
		return []qdevice{usb}
	case "uas":
		usb.driver = "usb-uas"
	default:
		usb.driver = "usb-bot"
	}
	hd := qdevice{driver: "scsi-hd", props: [][2]string{{"id", d.ID + "-hd"}, {"bus", d.ID + "-usb.0"}, {"drive", d.ID}}}
	if d.transport() == "uas" {
		hd.props = append(hd.props, [2]string{"scsi-id", "0"}, [2]string{"lun", "0"})
	}
	if d.Vendor != "" {
		hd.props = append(hd.props, [2]string{"vendor", d.Vendor})
	}
	if d.Product != "" {
		hd.props = append(hd.props, [2]string{"product", d.Product})
	}
	if d.Serial != "" {
		hd.props = append(hd.props, [2]string{"serial", d.Serial})
	}
	if d.LogicalBlockSize != 0 {
		hd.props = append(hd.props, [2]string{"logical_block_size", strconv.Itoa(d.LogicalBlockSize)})
	}
	if d.PhysicalBlockSize != 0 {
		hd.props = append(hd.props, [2]string{"physical_block_size", strconv.Itoa(d.PhysicalBlockSize)})
	}
	return []qdevice{usb, hd}
}

func (vm *VM) disk(id string) (Disk, error) {
	for _, d := range vm.cfg.Disks {
		if d.ID == id {
			return d, nil
		}
	}
	return Disk{}, fmt.Errorf("no disk %q in the VM config", id)
}

// Plug docks disk id: device_add of its USB function (and SCSI disk), then
// attaches the USB device (a hot-plugged usb-bot/usb-uas stays detached
// until its SCSI disk exists and "attached" is set).
func (vm *VM) Plug(id string) error {
	d, err := vm.disk(id)
	if err != nil {
		return err
	}
	devs := d.devices("usb0.0")
	for _, dev := range devs {
		if _, err := vm.qmp.execute("device_add", dev.qmpArgs()); err != nil {
			return err
		}
	}
	if d.transport() != "storage" {
		_, err := vm.qmp.execute("qom-set", map[string]any{"path": devs[0].id(), "property": "attached", "value": true})
		return err
	}
	return nil
}

// Unplug undocks disk id (device_del of its USB function) and waits for
// QEMU to report the device deleted, which it does once the guest has let
// go of it. The block node stays, so the disk can be plugged again.
func (vm *VM) Unplug(id string) error {
	since := time.Now()
	if _, err := vm.qmp.execute("device_del", map[string]any{"id": id + "-usb"}); err != nil {
		return err
	}
	_, err := vm.qmp.waitEvent("DEVICE_DELETED", "device", id+"-usb", since, 20*time.Second)
	return err
}

// Throttle limits the write (and read) bandwidth of docked disk id to
// bytesPerSec (0 removes the limit), so that a step of a run lasts long
// enough to be interrupted. Only for bot/uas disks (it names the scsi-hd).
func (vm *VM) Throttle(id string, bytesPerSec int64) error {
	_, err := vm.qmp.execute("block_set_io_throttle", map[string]any{
		"id": id + "-hd", "bps": 0, "bps_rd": 0, "bps_wr": bytesPerSec,
		"iops": 0, "iops_rd": 0, "iops_wr": 0,
	})
	return err
}

// QMP runs an arbitrary QMP command (for scenarios that need more).
func (vm *VM) QMP(command string, args map[string]any) (json.RawMessage, error) {
	if vm.qmp == nil {
		return nil, errors.New("no QMP connection")
	}
	return vm.qmp.execute(command, args)
}
