// Audio worklet of the chat page's microphone: hands each block of
// samples (mono, the context's rate) to the page, which keeps them and
// shows their level. Plain PCM works the same in every browser, unlike
// what MediaRecorder produces in each.
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor('voxgate-capture', Capture);
