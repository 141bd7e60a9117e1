// A Java function that does what its event asks (the event is JSON text; this probe reads
// it with plain string matching, as it has no JSON library).
public final class Probe {
    static String field(String json, String name) {
        int at = json.indexOf("\"" + name + "\"");
        if (at < 0) return null;
        int colon = json.indexOf(':', at);
        int end = json.indexOf(',', colon);
        if (end < 0) end = json.lastIndexOf('}');
        return json.substring(colon + 1, end).trim();
    }

    public static String handle(String event) throws Exception {
        String v;
        if ((v = field(event, "echo")) != null) return v;
        if ((v = field(event, "raise")) != null) throw new IllegalStateException(v.replace("\"", ""));
        if (field(event, "crash") != null) Runtime.getRuntime().halt(134);
        if ((v = field(event, "exit")) != null) Runtime.getRuntime().halt(Integer.parseInt(v));
        if ((v = field(event, "alloc_mb")) != null) {
            byte[][] blocks = new byte[Integer.parseInt(v)][];
            for (int i = 0; i < blocks.length; i++) {
                blocks[i] = new byte[1 << 20];
                java.util.Arrays.fill(blocks[i], (byte) 1);
            }
            System.out.println(blocks.length);
        }
        if ((v = field(event, "sleep_ms")) != null) Thread.sleep(Long.parseLong(v));
        if ((v = field(event, "print")) != null) System.out.print("x".repeat(Integer.parseInt(v)));
        if ((v = field(event, "env")) != null) {
            String value = System.getenv(v.replace("\"", ""));
            return value == null ? "null" : "\"" + value + "\"";
        }
        return "null";
    }
}
