package valid

import "testing"

func TestGUID(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"7d1a5b4e-0c2f-4e8a-9b3d-6f1e2a3c4d5e": true,
		"7D1A5B4E-0C2F-4E8A-9B3D-6F1E2A3C4D5E": true,
		"7d1a5b4e0c2f4e8a9b3d6f1e2a3c4d5e":     false,
		"7d1a5b4e-0c2f-4e8a-9b3d-6f1e2a3c4d5":  false,
		"7d1a5b4e-0c2f-4e8a-9b3d-6f1e2a3c4d5g": false,
		"":                                     false,
	} {
		t.Run(s, func(t *testing.T) {
			if GUID(s) != want {
				t.Errorf("GUID(%q) = %v", s, !want)
			}
		})
	}
	if LowerGUID("7D1A5B4E-0C2F-4E8A-9B3D-6F1E2A3C4D5E") || !LowerGUID("7d1a5b4e-0c2f-4e8a-9b3d-6f1e2a3c4d5e") {
		t.Error("LowerGUID")
	}
}

func TestLoopbackHost(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]bool{
		"localhost": true, "LOCALHOST": true, "127.0.0.1": true, "127.9.9.9": true, "::1": true, "[::1]": true,
		"10.0.0.1": false, "example.com": false, "localhost.example.com": false, "": false,
	} {
		t.Run(h, func(t *testing.T) {
			if LoopbackHost(h) != want {
				t.Errorf("LoopbackHost(%q) = %v", h, !want)
			}
		})
	}
}
