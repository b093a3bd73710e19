import edu.stanford.nlp.process.PTBTokenizer;
import java.io.BufferedReader;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * The Stanford PTB tokenizer's command line, run once per request in one long-lived JVM.
 *
 * <p>Usage: {@code java -cp stanford-corenlp-3.4.1.jar:DIR PtbTokenizerServer FLAGS...}. Each
 * line on stdin is {@code INPUT<TAB>OUTPUT}: PTBTokenizer's own main tokenizes the file INPUT with
 * FLAGS, as {@code java edu.stanford.nlp.process.PTBTokenizer FLAGS INPUT > OUTPUT} would, and the
 * server answers {@code OK}, or {@code ERROR message}, on one line of stdout.
 */
public final class PtbTokenizerServer {
  private PtbTokenizerServer() {}

  public static void main(String[] flags) throws IOException {
    PrintStream answers = System.out;
    BufferedReader requests = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String[] args = Arrays.copyOf(flags, flags.length + 1);
    String request;
    while ((request = requests.readLine()) != null) {
      int tab = request.indexOf('\t');
      args[flags.length] = request.substring(0, tab);
      // PTBTokenizer writes its output to System.out (and closes it when done).
      try (PrintStream output = new PrintStream(new FileOutputStream(request.substring(tab + 1)), false, "UTF-8")) {
        System.setOut(output);
        PTBTokenizer.main(args);
        answers.println("OK");
      } catch (Exception e) {
        answers.println("ERROR " + String.valueOf(e).replace('\n', ' '));
      } finally {
        System.setOut(answers);
      }
      answers.flush();
    }
  }
}
