// Drives pgwarden with PgJDBC over TLS in its default mode (server-side
// prepared statements after prepareThreshold = 5 runs), a few connections
// with transactions, and checks every answer. Usage:
// java -cp postgresql.jar JdbcTls.java JDBC_URL   (prints OK on success)
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;

public class JdbcTls {
    public static void main(String[] args) throws Exception {
        for (int c = 0; c < 4; c++) {
            try (Connection conn = DriverManager.getConnection(args[0])) {
                conn.setAutoCommit(false);
                try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int + ?::int")) {
                    for (int j = 0; j < 12; j++) {
                        ps.setInt(1, c);
                        ps.setInt(2, j);
                        try (ResultSet rs = ps.executeQuery()) {
                            rs.next();
                            if (rs.getInt(1) != c + j) {
                                throw new AssertionError(c + "+" + j + " -> " + rs.getInt(1));
                            }
                        }
                        conn.commit();
                    }
                }
                try (Statement st = conn.createStatement();
                        ResultSet rs = st.executeQuery("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")) {
                    rs.next();
                }
                conn.commit();
            }
        }
        System.out.println("OK");
    }
}
