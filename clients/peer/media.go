package peer

import (
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

// opusSilence is one valid Opus packet: TOC 0xf8 (CELT fullband, 20 ms,
// mono, one frame) followed by a frame that decodes to silence.
var opusSilence = []byte{0xf8, 0xff, 0xfe}

// frameDuration is the audio packet interval.
const frameDuration = 20 * time.Millisecond

// newAPI builds the Pion API for the connections to one remote peer: the
// default codecs, an interceptor counting RTP packets sent into rtpOut, and
// ICE settings that work offline unless cfg.AllInterfaces is set.
func newAPI(cfg Config, rtpOut *atomic.Uint64) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	reg.Add(rtpCounterFactory{rtpOut})

	var s webrtc.SettingEngine
	s.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	s.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	s.SetICETimeouts(3*time.Second, 6*time.Second, time.Second)
	if !cfg.AllInterfaces {
		loopback := func(ip net.IP) bool { return ip.IsLoopback() }
		s.SetIncludeLoopbackCandidate(true)
		s.SetInterfaceFilter(func(name string) bool { return strings.HasPrefix(name, "lo") })
		s.SetIPFilter(loopback)
		s.SetRemoteIPFilter(loopback)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(s)), nil
}

// rtpCounterFactory makes one rtpCounter per PeerConnection.
type rtpCounterFactory struct{ n *atomic.Uint64 }

func (f rtpCounterFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &rtpCounter{n: f.n}, nil
}

// rtpCounter counts the RTP packets written to the network.
type rtpCounter struct {
	interceptor.NoOp
	n *atomic.Uint64
}

func (c *rtpCounter) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		n, err := w.Write(h, payload, a)
		if err == nil {
			c.n.Add(1)
		}
		return n, err
	})
}

func newAudioTrack(id string) (*webrtc.TrackLocalStaticSample, error) {
	return webrtc.NewTrackLocalStaticSample(
		webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2},
		"audio", "tickwire-"+id)
}

// sendAudio writes a silent Opus frame to the shared track every 20 ms
// until Close; Pion sends it on every connection the track is part of.
func (p *Peer) sendAudio() {
	defer p.wg.Done()
	t := time.NewTicker(frameDuration)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-t.C:
			_ = p.track.WriteSample(media.Sample{Data: opusSilence, Duration: frameDuration})
		}
	}
}
