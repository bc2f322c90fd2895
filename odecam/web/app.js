// odecam serve: send the webcam to the server over WebRTC, show the animated avatar it sends back.
// The token comes from the URL fragment (#token=...), which the browser never sends to the server.
// window.odecam.snapshot() exposes the page state (used by the end-to-end test).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    phase: "idle", error: null, avatars: [], avatar: null, peer: null,
    connectionState: "new", framesDecoded: 0, frameWidth: 0, frameHeight: 0,
    probed: 0, changes: 0, server: null,
  };
  const checksums = new Set();
  let lastChecksum = null;
  let token = new URLSearchParams(location.hash.slice(1)).get("token") || sessionStorage.getItem("odecam-token") || "";
  let pc = null, channel = null, camera = null, statsTimer = null;

  function status(text, isError = false) {
    $("status").textContent = text;
    $("status").classList.toggle("error", isError);
    if (isError) state.error = text;
  }

  async function api(path, options = {}) {
    const headers = Object.assign({ Authorization: "Bearer " + token }, options.headers || {});
    const res = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) {
      if (res.status === 401) $("token-row").hidden = false;
      throw new Error((body && body.error) || `${path}: HTTP ${res.status}`);
    }
    return body;
  }

  async function loadAvatars() {
    const body = await api("/avatars");
    state.avatars = body.avatars.map((a) => a.name);
    if (!state.avatar) state.avatar = body.default;
    $("avatar").replaceChildren(...state.avatars.map((n) => new Option(n, n, false, n === state.avatar)));
  }

  function waitForIceGathering(timeoutMs = 5000) {
    // aiortc takes no trickled candidates: the offer must carry them all.
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (pc.iceGatheringState === "complete") {
          pc.removeEventListener("icegatheringstatechange", check);
          resolve();
        }
      };
      pc.addEventListener("icegatheringstatechange", check);
      setTimeout(resolve, timeoutMs);
    });
  }

  function fnv1a(data) {
    let h = 0x811c9dc5;
    for (let i = 0; i < data.length; i += 1) {
      if ((i & 3) === 3) continue; // skip alpha
      h = Math.imul(h ^ data[i], 0x01000193);
    }
    return h >>> 0;
  }

  function probe(video) {
    // Checksum every decoded frame drawn into a canvas: distinct values mean the avatar moves.
    const canvas = $("probe");
    const ctx = canvas.getContext("2d", { willReadFrequently: true });
    const onFrame = () => {
      if (video.videoWidth > 0) {
        if (canvas.width !== video.videoWidth || canvas.height !== video.videoHeight) {
          canvas.width = video.videoWidth;
          canvas.height = video.videoHeight;
        }
        ctx.drawImage(video, 0, 0);
        const sum = fnv1a(ctx.getImageData(0, 0, canvas.width, canvas.height).data);
        state.probed += 1;
        if (lastChecksum !== null && sum !== lastChecksum) state.changes += 1;
        lastChecksum = sum;
        if (checksums.size < 100000) checksums.add(sum);
      }
      schedule();
    };
    const schedule = () => {
      if (!pc) return;
      if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(onFrame);
      else setTimeout(onFrame, 33);
    };
    schedule();
  }

  function onMessage(msg) {
    if (msg.type === "hello" || msg.type === "avatar") {
      state.avatar = msg.avatar;
      $("avatar").value = msg.avatar;
    } else if (msg.type === "stats") {
      state.server = msg;
      $("stats").textContent = `server: ${msg.frames_in} frames in, ${msg.frames_dropped} dropped as stale, ` +
        `${msg.frames_animated} animated (p50 ${msg.latency_p50_ms} ms), ${msg.frames_sent} sent | ` +
        `browser: ${state.framesDecoded} decoded ${state.frameWidth}x${state.frameHeight}`;
    } else if (msg.type === "error") {
      status(msg.message, true);
    }
  }

  function send(message) {
    if (channel && channel.readyState === "open") channel.send(JSON.stringify(message));
  }

  async function pollStats() {
    if (!pc) return;
    const report = await pc.getStats();
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        state.framesDecoded = s.framesDecoded || 0;
        state.frameWidth = s.frameWidth || 0;
        state.frameHeight = s.frameHeight || 0;
      }
    });
  }

  async function start() {
    if (pc) return;
    $("start").disabled = true;
    state.error = null;
    try {
      if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
        throw new Error("this browser gives no camera access here: open the page over https or from localhost");
      }
      if (!state.avatars.length) await loadAvatars();
      state.phase = "camera";
      status("Starting the camera...");
      camera = await navigator.mediaDevices.getUserMedia({
        video: { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30 } }, audio: false,
      });
      $("local").srcObject = camera;
      pc = new RTCPeerConnection({ iceServers: [] });
      camera.getVideoTracks().forEach((t) => pc.addTrack(t, camera));
      channel = pc.createDataChannel("control");
      channel.onmessage = (e) => { try { onMessage(JSON.parse(e.data)); } catch (err) { /* ignore */ } };
      channel.onopen = () => { $("recalibrate").disabled = false; };
      pc.ontrack = (e) => {
        const video = $("remote");
        // the avatar's box takes the video's own shape: square, or the whole photo with serve --paste-back
        video.onresize = () => {
          if (video.videoWidth > 0 && video.videoHeight > 0) video.style.aspectRatio = `${video.videoWidth} / ${video.videoHeight}`;
        };
        video.srcObject = e.streams[0] || new MediaStream([e.track]);
        probe(video);
      };
      pc.onconnectionstatechange = () => {
        state.connectionState = pc ? pc.connectionState : "closed";
        if (state.connectionState === "connected") { state.phase = "live"; status("Live."); }
        if (state.connectionState === "failed") status("The connection to the server failed; press Start again.", true);
      };
      state.phase = "connecting";
      status("Connecting...");
      await pc.setLocalDescription(await pc.createOffer());
      await waitForIceGathering();
      const answer = await api("/offer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type, avatar: state.avatar }),
      });
      state.peer = answer.peer;
      await pc.setRemoteDescription({ sdp: answer.sdp, type: answer.type });
      statsTimer = setInterval(pollStats, 500);
      $("stop").disabled = false;
    } catch (err) {
      status(`Could not start: ${err.message}`, true);
      stop(false);
    }
  }

  function stop(clearStatus = true) {
    if (statsTimer) clearInterval(statsTimer);
    statsTimer = null;
    if (pc) pc.close();
    pc = null;
    channel = null;
    if (camera) camera.getTracks().forEach((t) => t.stop());
    camera = null;
    $("local").srcObject = null;
    $("remote").srcObject = null;
    state.phase = "idle";
    state.connectionState = "closed";
    $("start").disabled = false;
    $("stop").disabled = true;
    $("recalibrate").disabled = true;
    if (clearStatus) status("Stopped.");
  }

  function selectAvatar(name) {
    state.avatar = name;
    send({ type: "avatar", name });
  }

  function recalibrate() {
    send({ type: "recalibrate" });
    status("Recalibrated: your current pose is now the neutral pose.");
  }

  $("start").addEventListener("click", start);
  $("stop").addEventListener("click", () => stop());
  $("recalibrate").addEventListener("click", recalibrate);
  $("avatar").addEventListener("change", (e) => selectAvatar(e.target.value));
  $("save-token").addEventListener("click", () => {
    token = $("token").value.trim();
    sessionStorage.setItem("odecam-token", token);
    $("token-row").hidden = true;
    loadAvatars().then(() => status("Token accepted. Press \"Start camera\"."), (e) => status(e.message, true));
  });
  window.addEventListener("pagehide", () => { if (pc) pc.close(); });

  window.odecam = {
    start, stop, selectAvatar, recalibrate,
    snapshot: () => Object.assign({}, state, { distinct: checksums.size }),
  };
  if (!token) {
    $("token-row").hidden = false;
    status("Open the URL that odecam serve printed (it carries the token), or paste the token here.");
  } else {
    if (location.hash) history.replaceState(null, "", location.pathname);  // keep the token out of view
    sessionStorage.setItem("odecam-token", token);
    loadAvatars().catch((e) => status(e.message, true));
  }
})();
