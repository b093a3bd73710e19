import edu.cmu.meteor.scorer.MeteorConfiguration;
import edu.cmu.meteor.util.Constants;
import edu.cmu.meteor.util.Normalizer;
import java.io.BufferedOutputStream;
import java.io.BufferedReader;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.InputStreamReader;
import java.io.OutputStream;
import java.net.URL;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.nio.file.StandardCopyOption;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Map;
import java.util.Set;
import java.util.StringTokenizer;
import java.util.zip.Deflater;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;

/**
 * METEOR 1.5 in -stdio mode with its paraphrase table cut down to the entries that can match the
 * given references. Loading the whole English table (5.3 million entries) is most of METEOR's
 * start-up; on the E2E test set the cut keeps 5% of them, and every score is the whole table's.
 *
 * <p>Usage: {@code java -cp meteor-1.5.jar:DIR MeteorForReferences REFS TABLE.gz METEOR-ARGS...}.
 * REFS holds every reference, one a line (UTF-8). Unless TABLE.gz exists, the cut table is
 * written there (atomically); then METEOR's own main runs with METEOR-ARGS plus {@code -a TABLE.gz}.
 *
 * <p>Why the cut changes no score: only the paraphrase matcher reads the table. For a hypothesis
 * and one reference it walks each sentence's word sequences through a trie of the entries' first
 * phrases and, for an entry (p1, p2) found there, searches the other sentence for p2; so an entry
 * is used only where p1 or p2 occurs word for word in the reference. An entry with neither phrase
 * a word sequence of any reference can never match. The kept entries stay in file order, so the
 * matcher meets the same candidates in the same order; word ids are only compared for equality.
 * The references are prepared as METEOR's scorer prepares them: split at "|||" as the stdio
 * protocol splits, normalised and lower-cased as the configuration says, split into words as the
 * aligner splits.
 */
public final class MeteorForReferences {
  /** Word sequences longer than this are checked by their first MAX_PHRASE words (keeps more). */
  private static final int MAX_PHRASE = 12;

  private MeteorForReferences() {}

  public static void main(String[] args) throws IOException {
    String[] meteorArgs = Arrays.copyOfRange(args, 2, args.length);
    Path table = Paths.get(args[1]);
    if (!Files.exists(table)) {
      MeteorConfiguration config = new MeteorConfiguration(Meteor.createPropertiesFromArgs(meteorArgs, 2));
      long start = System.nanoTime();
      Phrases phrases = referencePhrases(args[0], config);
      Path partial = Files.createTempFile(table.toAbsolutePath().getParent(), table.getFileName().toString(), ".part");
      long[] counts;
      try {
        counts = cutTable(config.getParaDirURL(), partial, phrases);
        Files.move(partial, table, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
      } finally {
        Files.deleteIfExists(partial);  // a failed cut leaves nothing behind
      }
      System.err.printf("paraphrase table: kept %d of %d entries in %.2f s%n",
          counts[0], counts[1], (System.nanoTime() - start) / 1e9);
    }
    String[] withTable = Arrays.copyOf(meteorArgs, meteorArgs.length + 2);
    withTable[meteorArgs.length] = "-a";
    withTable[meteorArgs.length + 1] = table.toString();
    Meteor.main(withTable);
  }

  /** Each reference as METEOR's scorer prepares it (see MeteorScorer.setNormalize). */
  private static Phrases referencePhrases(String path, MeteorConfiguration config) throws IOException {
    int mode = config.getNormalization();
    Set<String> seen = new HashSet<>();
    Phrases phrases = new Phrases();
    try (BufferedReader in = new BufferedReader(
        new InputStreamReader(new FileInputStream(path), StandardCharsets.UTF_8))) {
      String line;
      while ((line = in.readLine()) != null) {
        for (String piece : line.split("\\|\\|\\|")) {  // as the stdio protocol splits a SCORE line
          piece = piece.trim();
          if (!seen.add(piece)) {
            continue;
          }
          if (mode == Constants.NORMALIZE_KEEP_PUNCT || mode == Constants.NORMALIZE_NO_PUNCT) {
            piece = Normalizer.normalizeLine(piece, config.getLangID(), mode == Constants.NORMALIZE_KEEP_PUNCT);
          }
          phrases.addSentence(mode == Constants.NO_NORMALIZE ? piece : piece.toLowerCase());
        }
      }
    }
    return phrases;
  }

  private static long[] cutTable(URL table, Path out, Phrases phrases) throws IOException {
    long kept = 0;
    long total = 0;
    try (EntryReader entries = new EntryReader(new GZIPInputStream(table.openStream(), 1 << 16), table);
        OutputStream cut = new BufferedOutputStream(new FastGzip(out), 1 << 16)) {
      while (entries.next()) {
        total++;
        byte[] bytes = entries.buffer();
        if (phrases.occurs(bytes, entries.start[1], entries.end[1])
            || phrases.occurs(bytes, entries.start[2], entries.end[2])) {
          kept++;
          for (int i = 0; i < 3; i++) {
            cut.write(bytes, entries.start[i], entries.end[i] - entries.start[i]);
            cut.write('\n');
          }
        }
      }
    }
    return new long[] {kept, total};
  }

  /**
   * The word sequences (up to MAX_PHRASE words) of the references, looked up by the UTF-8 bytes of
   * a table line. Words are split as StringTokenizer splits (at space, tab, newline, carriage
   * return, form feed), as both METEOR's aligner and its table loader do. Decoding 270 MB of table
   * into strings would cost more than the rest of the cut, so words are looked up as bytes and
   * sequences as 64-bit hashes of word ids; a hash collision only keeps an entry too many.
   */
  private static final class Phrases {
    private final Map<Bytes, Integer> ids = new HashMap<>();
    private final LongSet sequences = new LongSet();
    private final Bytes probe = new Bytes(new byte[0], 0, 0);

    void addSentence(String sentence) {
      StringTokenizer tokenizer = new StringTokenizer(sentence);
      int[] words = new int[tokenizer.countTokens()];
      for (int i = 0; i < words.length; i++) {
        byte[] bytes = tokenizer.nextToken().getBytes(StandardCharsets.UTF_8);
        words[i] = ids.computeIfAbsent(new Bytes(bytes, 0, bytes.length), k -> ids.size());
      }
      for (int i = 0; i < words.length; i++) {
        long hash = 0;
        for (int j = i; j < Math.min(words.length, i + MAX_PHRASE); j++) {
          hash = extend(hash, words[j]);
          sequences.add(hash);
        }
      }
    }

    /** Whether the words of line[from, to) occur one after another in some reference. */
    boolean occurs(byte[] line, int from, int to) {
      long hash = 0;
      int count = 0;
      int i = from;
      while (count < MAX_PHRASE) {
        while (i < to && isDelimiter(line[i])) {
          i++;
        }
        int start = i;
        while (i < to && !isDelimiter(line[i])) {
          i++;
        }
        if (i == start) {
          break;
        }
        int id = id(line, start, i - start);
        if (id < 0) {
          return false;
        }
        hash = extend(hash, id);
        count++;
      }
      // An empty first phrase matches wherever the matcher looks: keep it.
      return count == 0 || sequences.contains(hash);
    }

    private int id(byte[] line, int start, int length) {
      probe.reset(line, start, length);
      Integer id = ids.get(probe);
      if (id != null) {
        return id;
      }
      for (int i = start; i < start + length; i++) {
        if (line[i] < 0) {  // malformed UTF-8 can still decode to a reference word
          byte[] bytes = new String(line, start, length, StandardCharsets.UTF_8).getBytes(StandardCharsets.UTF_8);
          id = ids.get(new Bytes(bytes, 0, bytes.length));
          return id == null ? -1 : id;
        }
      }
      return -1;
    }

    private static long extend(long hash, int id) {
      long h = (hash + id + 1) * 0x9E3779B97F4A7C15L;
      return h ^ (h >>> 31);
    }

    private static boolean isDelimiter(byte b) {
      return b == ' ' || b == '\t' || b == '\n' || b == '\r' || b == '\f';
    }
  }

  /** An open-addressing set of longs (no boxing: the references have about half a million sequences). */
  private static final class LongSet {
    private long[] slots = new long[1 << 16];
    private boolean[] used = new boolean[1 << 16];
    private int size;

    void add(long value) {
      if (2 * (size + 1) > slots.length) {
        long[] oldSlots = slots;
        boolean[] oldUsed = used;
        slots = new long[2 * oldSlots.length];
        used = new boolean[2 * oldSlots.length];
        size = 0;
        for (int i = 0; i < oldSlots.length; i++) {
          if (oldUsed[i]) {
            add(oldSlots[i]);
          }
        }
      }
      int i = slot(value);
      if (!used[i]) {
        used[i] = true;
        slots[i] = value;
        size++;
      }
    }

    boolean contains(long value) {
      return used[slot(value)];
    }

    private int slot(long value) {
      int mask = slots.length - 1;
      int i = (int) (value ^ (value >>> 32)) & mask;
      while (used[i] && slots[i] != value) {
        i = (i + 1) & mask;
      }
      return i;
    }
  }

  /** A byte range with value semantics, for looking words up without making strings. */
  private static final class Bytes {
    private byte[] data;
    private int start;
    private int length;
    private int hash;

    Bytes(byte[] data, int start, int length) {
      reset(data, start, length);
    }

    void reset(byte[] data, int start, int length) {
      this.data = data;
      this.start = start;
      this.length = length;
      int h = 1;
      for (int i = start; i < start + length; i++) {
        h = 31 * h + data[i];
      }
      hash = h;
    }

    @Override
    public int hashCode() {
      return hash;
    }

    @Override
    public boolean equals(Object other) {
      if (!(other instanceof Bytes)) {
        return false;
      }
      Bytes that = (Bytes) other;
      return Arrays.equals(data, start, start + length, that.data, that.start, that.start + that.length);
    }
  }

  /**
   * The table's entries, three lines each (probability, first phrase, second phrase), read in
   * place from a large buffer. Lines end as BufferedReader.readLine ends them, at \n, \r or \r\n
   * (bytes that never occur inside a UTF-8 character), and a last line may lack its end.
   */
  private static final class EntryReader implements AutoCloseable {
    final int[] start = new int[3];
    final int[] end = new int[3];
    private final InputStream in;
    private final URL source;
    private byte[] buffer = new byte[1 << 22];
    private int position;
    private int limit;
    private boolean eof;

    EntryReader(InputStream in, URL source) {
      this.in = in;
      this.source = source;
    }

    /** The buffer the current entry's offsets refer to (it may be replaced by a larger one). */
    byte[] buffer() {
      return buffer;
    }

    boolean next() throws IOException {
      int entryStart = position;
      for (int line = 0; line < 3; line++) {
        while (true) {
          int e = position;
          while (e < limit && buffer[e] != '\n' && buffer[e] != '\r') {
            e++;
          }
          boolean complete = e < limit && (buffer[e] == '\n' || e + 1 < limit || eof);
          if (complete) {
            start[line] = position;
            end[line] = e;
            position = buffer[e] == '\r' && e + 1 < limit && buffer[e + 1] == '\n' ? e + 2 : e + 1;
            break;
          }
          if (eof) {
            if (position < limit) {  // a last line without its end
              start[line] = position;
              end[line] = limit;
              position = limit;
              break;
            }
            if (line == 0) {
              return false;
            }
            throw new IOException(source + " ends inside an entry");
          }
          // Keep the current entry, make room, read on.
          System.arraycopy(buffer, entryStart, buffer, 0, limit - entryStart);
          for (int i = 0; i < line; i++) {
            start[i] -= entryStart;
            end[i] -= entryStart;
          }
          limit -= entryStart;
          position -= entryStart;
          entryStart = 0;
          if (limit == buffer.length) {
            buffer = Arrays.copyOf(buffer, 2 * buffer.length);
          }
          int read = in.read(buffer, limit, buffer.length - limit);
          if (read < 0) {
            eof = true;
          } else {
            limit += read;
          }
        }
      }
      return true;
    }

    @Override
    public void close() throws IOException {
      in.close();
    }
  }

  /** The cut table is read once, right away: compressing it hard would only cost time. */
  private static final class FastGzip extends GZIPOutputStream {
    FastGzip(Path path) throws IOException {
      super(new FileOutputStream(path.toFile()), 1 << 16);
      def.setLevel(Deflater.BEST_SPEED);
    }
  }
}
