// Types of the hualu browser SDK (web/sdk/hualu.js, served at /sdk/hualu.js). The protocol underneath is in
// docs/protocol.md: call control over `GET /ws`, the call's room over `GET /rtc`.

/** Why a call ended, as call control says it. */
export type EndReason =
  | 'hangup'
  | 'cancelled'
  | 'declined'
  | 'busy'
  | 'no_answer'
  | 'connection_lost'
  | 'no_capacity'
  | 'answered_elsewhere'
  | 'ignored'
  | 'error';

/** Where a call is in its life. */
export type CallState = 'ringing' | 'connecting' | 'active' | 'reconnecting' | 'ended';

export interface ClientOptions {
  /** The server's base URL, e.g. `http://127.0.0.1:7880` (default: the page's origin). */
  server?: string;
  /** An access token (docs/protocol.md, "Access tokens") naming the user and the device. */
  token: string;
  /** Extra `RTCPeerConnection` settings, e.g. `{ iceTransportPolicy: 'relay' }`. */
  rtcConfig?: RTCConfiguration;
  /** Ring while already in a call (call waiting) instead of answering busy. Default false. */
  callWaiting?: boolean;
  /** Publish a camera with three simulcast layers when it captures at least this width. Default 640. */
  simulcastMinWidth?: number;
  /** How often per-participant quality is read from getStats(), ms. Default 2000. */
  statsIntervalMs?: number;
  /** Capture constraints. Default `{ audio: true, video: { width: 640, height: 480, frameRate: 30 } }`. */
  media?: { audio: boolean | MediaTrackConstraints; video: MediaTrackConstraints };
}

/** Quality of what one remote participant sends us, from getStats(), over the last stats interval. */
export interface Quality {
  /** Audio packets lost, percent of those expected. */
  lossPct: number;
  /** RFC 3550 interarrival jitter of the audio, ms. */
  jitterMs: number;
  /** Round-trip time to the SFU, ms (null until measured). */
  rttMs: number | null;
  /** Mouth-to-ear delay estimate used by the score, ms: RTT/2 + jitter buffer + 26.5 ms Opus + 40 ms device. */
  delayMs: number;
  /** E-model R on the wideband scale (G.107.1, Opus WB VBR 13 kb/s: Ie 19.96, Bpl 19.50, A = 0). */
  r: number;
  /** MOS from R (1 to 4.5). */
  mos: number;
  /** `good` (MOS >= 4), `fair` (>= 3.6), `poor` below. */
  level: 'good' | 'fair' | 'poor';
  /** Video frames decoded per second, when the participant sends video. */
  fps: number | null;
  /** Audio and video codecs received, e.g. `audio/opus`, `video/VP8`. */
  codecs: string[];
}

/** Someone else in the call's room. */
export interface Participant {
  /** The SFU's participant id. */
  id: string;
  /** The user id. */
  identity: string;
  /** Their audio and video, ready for a `<video>` element's `srcObject`. */
  stream: MediaStream;
  /** Their tracks as the room announces them. */
  tracks: { id: string; kind: 'audio' | 'video'; muted: boolean }[];
  /** Whether they muted their microphone. */
  audioMuted: boolean;
  /** Whether their camera is off or muted. */
  videoMuted: boolean;
  /** The latest quality reading, or null before the first. */
  quality: Quality | null;
}

export interface CallEvents {
  /** A callee's first device rings. */
  ringing: { user: string };
  /** Someone answered (`accepted` is the caller's view). */
  accepted: { user: string; device: string };
  /** A callee declined. */
  declined: { user: string };
  /** A callee is in another call. */
  busy: { user: string };
  /** A callee did not answer within the ring timeout. */
  missed: { user: string };
  /** Another device of this user answered: this one stops ringing. */
  answered_elsewhere: { device: string };
  /** Someone invited someone more. */
  invited: { user: string; by: string };
  /** Someone left and the call goes on. */
  left: { user: string; reason: string };
  /** The call's media is connected (or connected again). */
  active: {};
  /**
   * Media or signaling dropped and the SDK is resuming, or (`cause: 'moved'`) call control moved the call to
   * another SFU node, for `reason` `node_drained` or `node_lost`, and the SDK is joining it there.
   */
  reconnecting: { cause: string; reason?: string };
  /** Resumed: media flows again (`moved`: on the call's new SFU node). */
  reconnected: { ms: number; moved?: boolean };
  /** Another participant's connection dropped or came back (their `user`). */
  peer_reconnecting: { user: string };
  peer_reconnected: { user: string };
  /** A participant joined the room, or their tracks, mute state or stream changed. */
  participant: { participant: Participant };
  /** A participant left the room. */
  participant_left: { participant: Participant };
  /** Who speaks now, loudest first. */
  speakers: { speakers: { participant: Participant; level: number }[] };
  /** Fresh quality readings, one per participant. */
  quality: { participants: Participant[] };
  /** The state changed. */
  state: { state: CallState };
  /** The call is over for this device. */
  ended: { reason: EndReason; message?: string };
}

export declare class Call {
  /** The call id. */
  readonly id: string;
  /** `outgoing` when this device placed it. */
  readonly direction: 'outgoing' | 'incoming';
  /** Who called (incoming), or this user (outgoing). */
  readonly from: string;
  /** The users in the call, as far as this device knows. */
  readonly members: string[];
  /** Whether the call was placed with video. */
  readonly video: boolean;
  readonly state: CallState;
  /** This device's camera and microphone, once the call connects. */
  readonly localStream: MediaStream | null;
  /** The others in the room, by participant id. */
  readonly participants: Map<string, Participant>;
  /** The loudest participant right now, or null. */
  readonly activeSpeaker: Participant | null;
  readonly audioMuted: boolean;
  readonly cameraOn: boolean;

  on<K extends keyof CallEvents>(type: K, fn: (e: CallEvents[K]) => void): () => void;
  once<K extends keyof CallEvents>(type: K): Promise<CallEvents[K]>;

  /** Answers an incoming call on this device; `video` defaults to the call's media. */
  accept(opts?: { video?: boolean }): Promise<void>;
  /** Declines on every device of this user. */
  decline(): Promise<void>;
  /** Stops ringing on this device only. */
  ignore(): Promise<void>;
  /** Leaves the call (before an answer: cancels it, or declines it). */
  hangup(): Promise<void>;
  /** Invites more people into this call. */
  invite(users: string[]): Promise<void>;
  /** Mutes or unmutes the microphone. */
  setMuted(muted: boolean): Promise<void>;
  /** Turns the camera on or off (on: publishes a camera track if the call had none). */
  setCamera(on: boolean): Promise<void>;
  /** Switches microphone or camera to another device (`deviceId`s from `listDevices()`). */
  setDevices(devices: { audio?: string; video?: string }): Promise<void>;
  /** The raw `RTCPeerConnection.getStats()` of the room connection. */
  getStats(): Promise<RTCStatsReport | null>;
}

export interface ClientEvents {
  /** Someone calls this device. */
  incoming: { call: Call };
  /** A watched user's connected devices changed. */
  presence: { user: string; devices: string[] };
  /** The call-control connection dropped; the SDK is resuming it. */
  reconnecting: { cause: string };
  /** The call-control session is back (`resumed` false: it was lost and started anew). */
  reconnected: { resumed: boolean; ms: number };
  /** The server refused the connection or the session ended for good. */
  disconnected: { code: number; reason: string };
  /** A fresh token arrived (the server refreshes it before it expires). */
  token: { token: string; expiresAt: number };
}

export declare class HualuClient {
  constructor(opts: ClientOptions);
  /** The user id and device, once connected. */
  readonly user: string | null;
  readonly device: string | null;
  /** Calls this device knows of and that have not ended. */
  readonly calls: Map<string, Call>;
  /** Presence of watched users: user -> connected devices. */
  readonly presence: Map<string, string[]>;
  /** `connecting`, `connected`, `reconnecting` or `closed`. */
  readonly state: 'connecting' | 'connected' | 'reconnecting' | 'closed';

  on<K extends keyof ClientEvents>(type: K, fn: (e: ClientEvents[K]) => void): () => void;
  once<K extends keyof ClientEvents>(type: K): Promise<ClientEvents[K]>;

  /** Opens the call-control connection; resolves on the server's welcome. */
  connect(): Promise<void>;
  /** Watches these users' presence (replaces the list); resolves with their devices now. */
  watch(users: string[]): Promise<Map<string, string[]>>;
  /** Calls one user (1:1) or several (a group call). */
  call(users: string[], opts?: { video?: boolean }): Promise<Call>;
  /** Ring while in a call, or answer busy. */
  setCallWaiting(on: boolean): Promise<void>;
  /** Hangs up every call and closes the connection. */
  close(): Promise<void>;
}

/** A dev token from `hualu up --dev`'s `/dev/token?user=..&device=..`. */
export declare function devToken(user: string, device?: string, server?: string): Promise<string>;

/** Microphones and cameras, for `Call.setDevices`. */
export declare function listDevices(): Promise<{ audio: MediaDeviceInfo[]; video: MediaDeviceInfo[] }>;

/** The E-model (G.107 with the G.107.1 wideband scale, Opus WB VBR 13 kb/s constants, A = 0). */
export declare function emodel(p: { delayMs: number; lossPct: number; burstR?: number }): { r: number; mos: number };
